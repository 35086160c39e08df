package io.github.peft4j.prompt.ptuning;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * P-tuning at HF PEFT 0.21 parity (fixtures of {@code make_prompt_family_fixtures.py}, bases named by
 * {@code base_case}): HF's saved adapters load and give HF's logits; a new MLP or LSTM encoder given HF's encoder
 * weights ({@code prompt_encoder.safetensors}) computes HF's prompt and logits and saves HF's tensor; five SGD steps
 * through the encoder give HF's losses and HF's trained prompt.
 */
class PTuningParityTest {
    private static final double TOL = 1e-4;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    static Path baseDir(String name) {
        JsonNode baseCase = Fixtures.json(name, "logits.json").get("base_case");
        assertNotNull(baseCase, name + "/logits.json has no base_case");
        return Fixtures.dir(baseCase.asText()).resolve("base");
    }

    static ModelInput input(NDManager m, String name) {
        return new ModelInput(Fixtures.ids(m, name, "input_ids"), null, Fixtures.ids(m, name, "attention_mask"),
                Fixtures.ids(m, name, "token_type_ids"), null, null, false);
    }

    private static double check(PeftModel peft, NDManager m, String name, String key, String what) {
        NDArray logits = peft.forward(input(m, name)).logits();
        NDArray expected = Fixtures.logits(m, name, "logits.json", key);
        assertEquals(expected.getShape(), logits.getShape(), name + " " + what + " logits shape");
        double diff = Fixtures.maxAbsDiff(logits, expected);
        System.out.printf("parity %s %s max|diff| = %.3g%n", name, what, diff);
        assertTrue(diff < TOL, name + ": " + what + " max |diff| " + diff);
        return diff;
    }

    private static JsonNode config(Path dir) throws Exception {
        return JSON.readTree(dir.resolve("adapter_config.json").toFile());
    }

    /** A new adapter with HF's settings, its encoder (and classifier) set to HF's initial values. */
    static PromptEncoderAdapter hfInitialised(PeftModel peft, String name, TransformerModel model) throws Exception {
        Path dir = Fixtures.dir(name);
        JsonNode c = config(dir.resolve("adapter"));
        PromptEncoderAdapter adapter = (PromptEncoderAdapter) peft.addAdapter(PeftModel.DEFAULT, new PromptEncoderConfig()
                .numVirtualTokens(c.get("num_virtual_tokens").asInt())
                .encoderReparameterizationType(c.get("encoder_reparameterization_type").asText())
                .encoderHiddenSize(c.get("encoder_hidden_size").asInt())
                .encoderNumLayers(c.get("encoder_num_layers").asInt())
                .encoderDropout(c.get("encoder_dropout").asDouble()));
        assertTrue(adapter.hasEncoder());
        Map<String, String> sources = new TreeMap<>();
        try (SafeTensorsFile encoder = SafeTensorsFile.open(dir.resolve("prompt_encoder.safetensors"));
                SafeTensorsFile hfAdapter = SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"))) {
            for (String k : encoder.names()) {
                sources.put("prompt_encoder.default." + k, k);
            }
            boolean classifier = hfAdapter.names().contains("base_model.classifier.weight");
            Map<String, Param> trainable = peft.trainableParameters();
            Map<String, Param> prompt = new TreeMap<>(trainable);
            if (classifier) { // SEQ_CLS: the classifier copy trains too; HF's starts as the base's, so does ours
                assertTrue(prompt.remove("classifier.modules_to_save.default.weight") != null, name + " classifier weight");
                assertTrue(prompt.remove("classifier.modules_to_save.default.bias") != null, name + " classifier bias");
                assertEquals(0.0, Fixtures.maxAbsDiff(trainable.get("classifier.modules_to_save.default.weight").array(),
                        hfAdapter.load("base_model.classifier.weight", model.manager())), name + " initial classifier");
            }
            assertEquals(sources.keySet(), prompt.keySet(), name + " trainable parameters (HF's names)");
            for (Map.Entry<String, String> e : sources.entrySet()) {
                Param p = trainable.get(e.getKey());
                NDArray value = encoder.load(e.getValue(), model.manager());
                assertEquals(p.shape(), value.getShape(), name + " " + e.getKey() + " shape");
                p.set(value);
            }
        }
        return adapter;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_ptuning_mlp", "llama_ptuning_lstm", "bert_ptuning_mlp", "bert_ptuning_lstm"})
    void hfAdapterLogitsAndSaveRoundTrip(String name) throws Exception {
        Path src = Fixtures.dir(name).resolve("adapter");
        Path out = tmp.resolve(name);
        NDArray first;
        try (NDManager keep = NDManager.newBaseManager()) {
            try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(model);
                PromptEncoderAdapter a = (PromptEncoderAdapter) peft.loadAdapter(src, PeftModel.DEFAULT, false);
                assertFalse(a.hasEncoder(), "a loaded P-tuning adapter is the fixed table HF saved");
                check(peft, m, name, "adapter_logits", "hf-adapter");
                try (AutoCloseable off = peft.disabled()) {
                    check(peft, m, name, "base_logits", "disabled");
                }
                first = peft.forward(input(m, name)).logits().toDevice(keep.getDevice(), true);
                first.attach(keep);
                peft.save(out);
                try (SafeTensorsFile hf = SafeTensorsFile.open(src.resolve("adapter_model.safetensors"));
                        SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                    assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()), name + " saved keys");
                    for (String k : hf.names()) {
                        assertEquals(0.0, Fixtures.maxAbsDiff(ours.load(k, m), hf.load(k, m)), name + " " + k);
                    }
                }
                JsonNode a1 = config(src);
                JsonNode b1 = config(out);
                Fixtures.assertConfigKeysAsHf(a1, b1, name);
                for (String k : List.of("encoder_reparameterization_type", "encoder_hidden_size", "encoder_num_layers",
                        "encoder_dropout", "peft_type", "num_virtual_tokens", "token_dim")) {
                    assertEquals(a1.get(k), b1.get(k), name + " adapter_config " + k);
                }
            }
            try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(model);
                peft.loadAdapter(out, PeftModel.DEFAULT, false);
                double diff = Fixtures.maxAbsDiff(peft.forward(input(m, name)).logits(), first);
                System.out.printf("parity %s reloaded-from-peft4j-save max|diff| = %.3g%n", name, diff);
                assertEquals(0.0, diff, name + " logits after save and reload");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_ptuning_mlp", "llama_ptuning_lstm", "bert_ptuning_mlp", "bert_ptuning_lstm"})
    void encoderMatchesHf(String name) throws Exception {
        try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager();
                SafeTensorsFile hfAdapter = SafeTensorsFile.open(Fixtures.dir(name).resolve("adapter/adapter_model.safetensors"))) {
            PeftModel peft = PeftModel.wrap(model);
            hfInitialised(peft, name, model);
            check(peft, m, name, "adapter_logits", "encoder");
            Path out = tmp.resolve(name + "-encoder");
            peft.save(out);
            try (SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hfAdapter.names()), new TreeSet<>(ours.names()), name + " saved keys");
                double diff = Fixtures.maxAbsDiff(ours.load("prompt_embeddings", m), hfAdapter.load("prompt_embeddings", m));
                System.out.printf("parity %s saved prompt_embeddings (encoder output) max|diff| = %.3g%n", name, diff);
                assertTrue(diff < 1e-5, name + " saved prompt_embeddings differ from HF's by " + diff);
            }
        }
    }

    /** The base of a case, with sgd.json's config overrides (BERT without dropout) applied, in a temp dir. */
    private Path trainingBase(String name, JsonNode sgd) throws Exception {
        Path base = baseDir(name);
        JsonNode overrides = sgd.get("base_config_overrides");
        if (overrides == null || overrides.isEmpty()) {
            return base;
        }
        Path dir = tmp.resolve(name + "-base");
        Files.createDirectories(dir);
        ObjectNode c = (ObjectNode) JSON.readTree(base.resolve("config.json").toFile());
        overrides.fields().forEachRemaining(e -> c.set(e.getKey(), e.getValue()));
        Files.writeString(dir.resolve("config.json"), JSON.writeValueAsString(c));
        Files.copy(base.resolve("model.safetensors"), dir.resolve("model.safetensors"));
        return dir;
    }

    private static int[] ints(JsonNode n) {
        if (n == null) {
            return null;
        }
        int[] v = new int[n.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = n.get(i).asInt();
        }
        return v;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_ptuning_mlp", "llama_ptuning_lstm", "bert_ptuning_mlp", "bert_ptuning_lstm"})
    void fiveSgdStepsMatchHf(String name) throws Exception {
        JsonNode sgd = Fixtures.json(name, "sgd.json");
        List<Example> data = new ArrayList<>();
        for (JsonNode r : sgd.get("records")) {
            data.add(new Example(ints(r.get("input_ids")), ints(r.get("attention_mask")), ints(r.get("labels")),
                    r.has("label") ? r.get("label").asInt() : -1));
        }
        try (TransformerModel model = Models.load(trainingBase(name, sgd)); NDManager m = NDManager.newBaseManager();
                Sgd optimizer = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            PromptEncoderAdapter adapter = hfInitialised(peft, name, model);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(optimizer)
                    .optLearningRate(sgd.get("lr").asDouble()).optMaxSteps(sgd.get("steps").asInt())
                    .optBatchSize(sgd.get("batch_size").asInt()).optShuffle(false)
                    .optMaxGradNorm(sgd.get("max_grad_norm").asDouble()).build()) {
                List<Double> losses = t.train().losses();
                double worst = 0;
                for (int i = 0; i < losses.size(); i++) {
                    double want = sgd.get("losses").get(i).asDouble();
                    worst = Math.max(worst, Math.abs(want - losses.get(i)));
                    assertEquals(want, losses.get(i), TOL, name + " loss of step " + (i + 1));
                }
                assertEquals(sgd.get("steps").asInt(), losses.size(), name + " steps");
                NDArray trained = adapter.stateDict().get(PromptEncoderAdapter.KEY);
                NDArray expected = Fixtures.logits(m, name, "sgd.json", "trained_prompt_embeddings");
                double emb = Fixtures.maxAbsDiff(trained, expected);
                System.out.printf("parity %s train-sgd %d steps losses %s max|diff| = %.2e, trained prompt max|diff| = %.2e%n",
                        name, losses.size(), losses, worst, emb);
                assertTrue(emb < TOL, name + " trained prompt_embeddings differ from HF's by " + emb);
            }
        }
    }
}
