package io.github.peft4j.prompt.ptuning;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * P-tuning trains through its encoder for every task (the loss falls), a trained adapter saves and reloads to the
 * same logits (as HF's fixed table), a reloaded one can go on training that table, and bad configs fail with the
 * key named.
 */
class PTuningTrainingTest {
    @TempDir
    Path tmp;

    private static List<Example> examples(TaskType task, int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[6 + r.nextInt(4)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            switch (task) {
                case SEQ_CLS -> out.add(Example.classified(ids, i % 3));
                case TOKEN_CLS -> {
                    int[] labels = new int[ids.length];
                    for (int j = 0; j < ids.length; j++) {
                        labels[j] = ids[j] % 3;
                    }
                    out.add(Example.labelled(ids, labels));
                }
                default -> out.add(Example.tokens(ids));
            }
        }
        return out;
    }

    private static List<Double> train(PeftModel peft, List<Example> data, int steps, double lr) {
        try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(lr)
                .optMaxSteps(steps).optBatchSize(data.size()).optShuffle(false).optMaxGradNorm(0).build()) {
            return t.train().losses();
        }
    }

    private void learns(Supplier<TransformerModel> factory, TaskType task, PromptEncoderConfig config, String what) {
        try (TransformerModel model = factory.get()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config);
            List<Double> losses = train(peft, examples(task, 4, 3), 30, 1e-2);
            double first = losses.get(0);
            double last = losses.get(losses.size() - 1);
            System.out.printf("training P-tuning %s %s: loss %.4f -> %.4f%n", config.encoderReparameterizationType(), what,
                    first, last);
            assertTrue(last < 0.8 * first, what + ": loss " + first + " -> " + last);
        }
    }

    @Test
    void mlpLearnsCausalLm() {
        learns(TinyModels::llama, TaskType.CAUSAL_LM, new PromptEncoderConfig().numVirtualTokens(6).encoderHiddenSize(32),
                "llama causal LM");
    }

    @Test
    void lstmLearnsCausalLm() {
        learns(TinyModels::gpt2, TaskType.CAUSAL_LM, new PromptEncoderConfig().numVirtualTokens(6).encoderHiddenSize(16)
                .encoderReparameterizationType(PromptEncoderConfig.LSTM), "gpt2 causal LM");
    }

    @Test
    void lstmLearnsSequenceClassification() {
        learns(() -> TinyModels.bert(TaskType.SEQ_CLS), TaskType.SEQ_CLS, new PromptEncoderConfig().numVirtualTokens(4)
                .encoderReparameterizationType(PromptEncoderConfig.LSTM).encoderHiddenSize(16).encoderNumLayers(1),
                "bert seq-cls");
    }

    @Test
    void mlpLearnsTokenClassification() {
        learns(() -> TinyModels.bert(TaskType.TOKEN_CLS), TaskType.TOKEN_CLS, new PromptEncoderConfig().numVirtualTokens(4)
                .encoderHiddenSize(32), "bert token-cls");
    }

    @Test
    void trainedAdapterSavesAndReloadsAsHfsFixedTable() throws Exception {
        Path dir = tmp.resolve("pt");
        try (NDManager keep = NDManager.newBaseManager()) {
            NDArray ids = TinyModels.ids(keep, 2, 7, 4).duplicate();
            NDArray before;
            try (TransformerModel model = TinyModels.llama()) {
                PeftModel peft = PeftModel.wrap(model);
                peft.addAdapter("default", new PromptEncoderConfig().numVirtualTokens(5).encoderHiddenSize(12)
                        .encoderReparameterizationType(PromptEncoderConfig.LSTM).encoderDropout(0.1));
                train(peft, examples(TaskType.CAUSAL_LM, 4, 8), 3, 1e-2);
                before = peft.forward(ModelInput.of(ids, null)).logits().duplicate();
                before.attach(keep);
                assertEquals(new Shape(2, 5 + 7, 128), before.getShape(), "virtual positions come first");
                peft.save(dir);
            }
            assertTrue(Files.readString(dir.resolve("adapter_config.json")).contains("\"encoder_reparameterization_type\" : \"LSTM\""));
            try (TransformerModel model = TinyModels.llama()) {
                PeftModel peft = PeftModel.wrap(model);
                PromptEncoderAdapter a = (PromptEncoderAdapter) peft.loadAdapter(dir, "default", true);
                assertFalse(a.hasEncoder());
                double diff = Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), before);
                System.out.printf("P-tuning save/load round trip max|diff| = %.3g%n", diff);
                assertEquals(0.0, diff, "reloaded logits");
                assertEquals(List.of("prompt_encoder.default.embedding.weight"), List.copyOf(peft.trainableParameters().keySet()),
                        "a reloaded adapter trains the saved table");
                List<Double> losses = train(peft, examples(TaskType.CAUSAL_LM, 4, 8), 10, 1e-2);
                assertTrue(losses.get(9) < losses.get(0), "the reloaded table trains: " + losses);
            }
        }
    }

    @Test
    void lstmDropoutActsOnlyWhileTrainingAndNeverInTheSavedPrompt() {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            PromptEncoderAdapter a = (PromptEncoderAdapter) peft.addAdapter("default", new PromptEncoderConfig()
                    .numVirtualTokens(4).encoderHiddenSize(8).encoderReparameterizationType(PromptEncoderConfig.LSTM)
                    .encoderNumLayers(2).encoderDropout(0.5));
            NDArray eval1 = a.inputEmbeddings(1);
            NDArray eval2 = a.inputEmbeddings(1);
            assertEquals(0.0, Fixtures.maxAbsDiff(eval1, eval2), "no dropout in eval mode");
            NDArray saved = a.stateDict().get(PromptEncoderAdapter.KEY);
            model.train(true);
            try {
                double drawn = Fixtures.maxAbsDiff(a.inputEmbeddings(1), a.inputEmbeddings(1));
                assertTrue(drawn > 1e-4, "dropout between the LSTM layers while training: " + drawn);
                assertEquals(0.0, Fixtures.maxAbsDiff(a.stateDict().get(PromptEncoderAdapter.KEY), saved),
                        "the saved prompt is computed without dropout");
            } finally {
                model.train(false);
            }
            assertEquals(0.0, Fixtures.maxAbsDiff(eval1.get(0), saved), "the saved prompt is the eval-mode prompt");
        }
    }

    @Test
    void badConfigsAreNamed() throws Exception {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            PeftException e = assertThrows(PeftException.class, () -> peft.addAdapter("x", new PromptEncoderConfig()
                    .numVirtualTokens(3).encoderReparameterizationType("GRU")));
            assertTrue(e.getMessage().contains("'encoder_reparameterization_type' must be MLP or LSTM, found GRU"), e.getMessage());
            e = assertThrows(PeftException.class, () -> peft.addAdapter("x", new PromptEncoderConfig().numVirtualTokens(3)
                    .encoderDropout(1.0)));
            assertTrue(e.getMessage().contains("'encoder_dropout' must be in [0, 1), found 1.0"), e.getMessage());
            e = assertThrows(PeftException.class, () -> peft.addAdapter("x", new PromptEncoderConfig().numVirtualTokens(3)
                    .encoderReparameterizationType(PromptEncoderConfig.LSTM).encoderNumLayers(0)));
            assertTrue(e.getMessage().contains("'encoder_num_layers' must be at least 1"), e.getMessage());
            e = assertThrows(PeftException.class, () -> peft.addAdapter("x", new PromptEncoderConfig().numVirtualTokens(3)
                    .encoderHiddenSize(-2)));
            assertTrue(e.getMessage().contains("'encoder_hidden_size' must be a positive integer, found -2"), e.getMessage());
            // an adapter made for another model: HF's llama file (token_dim 64) on a model of the same width loads,
            // with a changed token_dim it does not
            Path bad = tmp.resolve("bad");
            Files.createDirectories(bad);
            Path src = Fixtures.dir("llama_ptuning_mlp").resolve("adapter");
            Files.copy(src.resolve("adapter_model.safetensors"), bad.resolve("adapter_model.safetensors"));
            Files.writeString(bad.resolve("adapter_config.json"), Files.readString(src.resolve("adapter_config.json"))
                    .replace("\"token_dim\": 64", "\"token_dim\": 32"));
            e = assertThrows(PeftException.class, () -> peft.loadAdapter(bad, "x", false));
            assertTrue(e.getMessage().contains("'token_dim' is 32 but the model has 64"), e.getMessage());
            assertTrue(peft.adapterNames().isEmpty(), "nothing stays attached after a failed load");
            // an encoder cannot take a saved output
            PromptEncoderAdapter a = (PromptEncoderAdapter) peft.addAdapter("y", new PromptEncoderConfig().numVirtualTokens(4));
            e = assertThrows(PeftException.class, () -> a.loadStateDict(Map.of(PromptEncoderAdapter.KEY, a.embedding().array()), "file"));
            assertTrue(e.getMessage().contains("has an MLP encoder, but a saved 'prompt_embeddings' is the encoder's output"),
                    e.getMessage());
            // HF ignores encoder_num_layers for the MLP, and so do we
            peft.addAdapter("z", new PromptEncoderConfig().numVirtualTokens(2).encoderNumLayers(5));
            assertEquals(3, peft.adapter("z").parameters().keySet().stream().filter(k -> k.endsWith(".weight")
                    && k.contains("mlp_head")).count(), "three MLP layers");
        }
    }
}
