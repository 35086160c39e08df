package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** DoRA and LoRA on embeddings on tiny random models: gradients, init, dropout, merge rules, training, files. */
class LoraFamilyTest {
    private static final String Q = "model.layers.0.self_attn.q_proj";
    private static final String EMB = "model.embed_tokens";
    @TempDir
    Path tmp;

    private static NDArray loss(PeftModel peft, NDArray ids, NDArray weights) {
        return peft.forward(ModelInput.of(ids, null)).logits().mul(weights).sum();
    }

    private static LoraConfig dora() {
        return new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false).useDora(true);
    }

    @Test
    void magnitudeAndEmbeddingGradientsMatchFiniteDifferences() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(5);
            peft.addAdapter("dora", dora().targetModules("q_proj", "v_proj", "embed_tokens"));
            peft.addAdapter("emb", new LoraConfig().r(2).loraAlpha(4).initLoraWeights(false).targetModules("embed_tokens"));
            peft.setActive("dora", "emb");
            NDArray ids = TinyModels.ids(m, 2, 6, 1);
            Engine.getInstance().setRandomSeed(3);
            NDArray w = m.randomNormal(new Shape(2, 6, 128));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(loss(peft, ids, w));
            }
            Map<String, Param> trainable = peft.trainableParameters();
            for (String k : trainable.keySet()) {
                assertTrue(trainable.get(k).array().getGradient().abs().sum().getFloat() > 0, "gradient reaches " + k);
            }
            // the DoRA norm is detached (as HF), so only m's gradient is the derivative of the loss; A and B follow
            // HF's detached-norm gradient, which the 5-step SGD parity checks against HF
            for (String name : List.of(Q + ".lora_magnitude_vector.dora.weight", EMB + ".lora_magnitude_vector.dora.weight",
                    EMB + ".lora_embedding_A.emb", EMB + ".lora_embedding_B.emb")) {
                Param p = trainable.get(name);
                float[] grad = p.array().getGradient().toFloatArray();
                for (int idx : new int[] {0, 5, 7}) {
                    double fd = TinyModels.finiteDifference(p, idx, 1e-2f, () -> {
                        try (NDScope scope = new NDScope()) {
                            return (double) loss(peft, ids, w).getFloat();
                        }
                    });
                    assertEquals(fd, grad[idx], 2e-2 * Math.max(1, Math.abs(fd)), name + "[" + idx + "]");
                }
            }
        }
    }

    @Test
    void defaultInitIsANoOpAndTheMagnitudeIsTheWeightNorm() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            NDArray ids = TinyModels.ids(m, 2, 5, 2);
            NDArray before = peft.forward(ModelInput.of(ids, null)).logits();
            peft.addAdapter("default", new LoraConfig().r(4).useDora(true).targetModules("q_proj", "embed_tokens"));
            assertEquals(0.0, Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), before), "init is a no-op");
            Map<String, Param> all = model.parameters();
            NDArray w = all.get(Q + ".base_layer.weight").array();
            NDArray norm = w.square().sum(new int[] {1}).sqrt();
            assertTrue(Fixtures.maxAbsDiff(all.get(Q + ".lora_magnitude_vector.default.weight").array(), norm) < 1e-6);
            NDArray e = all.get(EMB + ".base_layer.weight").array();
            assertEquals(new Shape(64), all.get(EMB + ".lora_magnitude_vector.default.weight").shape());
            assertTrue(Fixtures.maxAbsDiff(all.get(EMB + ".lora_magnitude_vector.default.weight").array(),
                    e.square().sum(new int[] {0}).sqrt()) < 1e-6, "embedding magnitude: norm over the vocabulary");
            assertEquals(new Shape(4, 128), all.get(EMB + ".lora_embedding_A.default").shape());
            assertEquals(new Shape(64, 4), all.get(EMB + ".lora_embedding_B.default").shape());
            assertEquals(0f, all.get(EMB + ".lora_embedding_A.default").array().abs().sum().getFloat(), "HF: A zeros");
            assertTrue(all.get(EMB + ".lora_embedding_B.default").array().abs().sum().getFloat() > 0, "HF: B ~ N(0, 1)");
        }
    }

    @Test
    void doraDropoutActsAsHf() {
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(1);
            NDArray weight = m.randomNormal(new Shape(6, 5));
            NDArray bias = m.randomNormal(new Shape(6));
            LoraLayer layer = new LoraLayer(new Linear(weight, bias), AdapterState.of("default"));
            layer.addAdapter("default", 2, 2.0, 0.5, false, true);
            Map<String, Param> p = layer.parameters();
            NDArray a = p.get("lora_A.default.weight").array();
            NDArray b = p.get("lora_B.default.weight").array();
            NDArray mag = p.get("lora_magnitude_vector.default.weight").array();
            mag.muli(m.create(new float[] {1.1f, 0.9f, 1.2f, 1f, 0.8f, 1.05f}));
            NDArray g = mag.div(weight.add(b.matMul(a).mul(2)).square().sum(new int[] {1}).sqrt());
            NDArray x = m.randomNormal(new Shape(3, 5));
            // eval: base (x W^T + b) + (g - 1)(x W^T) + g (x A^T B^T) 2
            NDArray xw = x.matMul(weight.transpose());
            NDArray expectEval = xw.add(bias).add(xw.mul(g.sub(1))).add(x.matMul(a.transpose()).matMul(b.transpose()).mul(2).mul(g));
            assertTrue(Fixtures.maxAbsDiff(layer.forward(x), expectEval) < 1e-5);
            // training: h = dropout(x); base part recomputed from h without bias
            layer.train(true);
            Engine.getInstance().setRandomSeed(9);
            NDArray got = layer.forward(x);
            Engine.getInstance().setRandomSeed(9);
            NDArray h = ai.djl.nn.norm.Dropout.dropout(x, 0.5f, true).head();
            NDArray hw = h.matMul(weight.transpose());
            NDArray expectTrain = xw.add(bias).add(hw.mul(g.sub(1))).add(h.matMul(a.transpose()).matMul(b.transpose()).mul(2).mul(g));
            assertTrue(Fixtures.maxAbsDiff(got, expectTrain) < 1e-5, "training forward");
            assertTrue(Fixtures.maxAbsDiff(got, expectEval) > 1e-3, "dropout acted");
        }
    }

    @Test
    void doraNeedsDenseWeights() {
        try (NDManager m = NDManager.newBaseManager()) {
            AdapterState state = AdapterState.of("a");
            LoraLayer inner = new LoraLayer(new Linear(m.ones(new Shape(3, 3)), null), state);
            LoraLayer outer = new LoraLayer(inner, state);
            PeftException e = assertThrows(PeftException.class, () -> outer.addAdapter("a", 2, 1.0, 0, true, true));
            assertTrue(e.getMessage().contains("DoRA needs the dense weight"), e.getMessage());
        }
    }

    @Test
    void loraAndDoraMergedInTurnEqualTheUnmergedForwardAndUnmergeInAnyOrder() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(4);
            peft.addAdapter("a", new LoraConfig().r(2).initLoraWeights(false).targetModules("q_proj", "embed_tokens"));
            peft.addAdapter("b", dora().targetModules("q_proj", "embed_tokens"));
            peft.setActive("a", "b");
            model.parameters().forEach((k, p) -> { // m away from the norm, so that g != 1
                if (k.contains("lora_magnitude_vector.b")) {
                    p.array().muli(m.randomUniform(0.8f, 1.2f, p.shape()));
                }
            });
            NDArray ids = TinyModels.ids(m, 2, 5, 3);
            NDArray unmerged = peft.forward(ModelInput.of(ids, null)).logits();
            NDArray onlyBLogits;
            peft.setActive("b");
            onlyBLogits = peft.forward(ModelInput.of(ids, null)).logits();
            peft.setActive("a", "b");
            assertTrue(Fixtures.maxAbsDiff(onlyBLogits, unmerged) > 1e-2, "adapter a matters");
            Map<String, Param> all = model.parameters();
            float[] q0 = all.get(Q + ".base_layer.weight").array().toFloatArray();
            float[] e0 = all.get(EMB + ".base_layer.weight").array().toFloatArray();
            peft.merge("a");
            peft.merge("b"); // DoRA after LoRA: g_b (W + ΔA + ΔB), the norm from the clean W
            assertTrue(((LoraLayer) model.modules().get(Q)).isMerged("a"), "a stays merged under b");
            double merged = Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), unmerged);
            assertTrue(merged < 1e-4, "merged a, b vs unmerged: " + merged);
            float[] onlyB;
            peft.unmerge("a"); // a is under b's rescaling: b is taken out and put back
            onlyB = all.get(Q + ".base_layer.weight").array().toFloatArray();
            peft.unmerge("b");
            assertTrue(maxDiff(all.get(Q + ".base_layer.weight").array().toFloatArray(), q0) < 1e-5);
            assertTrue(maxDiff(all.get(EMB + ".base_layer.weight").array().toFloatArray(), e0) < 1e-5);
            peft.merge("b");
            assertTrue(maxDiff(all.get(Q + ".base_layer.weight").array().toFloatArray(), onlyB) < 1e-5,
                    "unmerging a left exactly b merged");
            peft.unmerge("b");
            assertTrue(Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), unmerged) < 1e-4);
            assertTrue(model.modules().get(Q) instanceof LoraLayer l && l.isDora("b") && !l.isDora("a"));
        }
    }

    private static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    @Test
    void trainingLowersTheLossAndTheSavedAdapterReloads() {
        List<Example> data = new ArrayList<>();
        Random r = new Random(6);
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[6 + r.nextInt(4)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(20); // a small vocabulary: easy to learn
            }
            data.add(Example.tokens(ids));
        }
        try (TransformerModel model = TinyModels.gpt2(); NDManager m = NDManager.newBaseManager(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).useDora(true).targetModules("c_attn", "wte"));
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.5).optMaxSteps(30).optBatchSize(4).optShuffle(false).build()) {
                losses = t.train().losses();
            }
            double first = losses.get(0) + losses.get(1);
            double last = losses.get(losses.size() - 1) + losses.get(losses.size() - 2);
            assertTrue(last < 0.8 * first, "loss " + losses);
            NDArray ids = TinyModels.ids(m, 2, 5, 8);
            NDArray tuned = peft.forward(ModelInput.of(ids, null)).logits();
            peft.save(tmp);
            try (TransformerModel fresh = TinyModels.gpt2()) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp, "default", false);
                assertEquals(0.0, Fixtures.maxAbsDiff(again.forward(ModelInput.of(ids, null)).logits(), tuned), 1e-6);
                assertFalse(again.adapter("default").stateDict().containsKey("base_model.model.transformer.wte.base_layer.weight"),
                        "wte is not an HF embedding-layer name: its base weight is not saved");
                assertTrue(again.adapter("default").stateDict().containsKey(
                        "base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector"));
            }
        }
    }

    @Test
    void targetingEmbedTokensSavesTheBaseEmbeddingAndLoadingCopiesItBack() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(2).initLoraWeights(false).targetModules("embed_tokens", "lm_head"));
            Map<String, NDArray> sd = peft.adapter("default").stateDict();
            assertTrue(sd.containsKey("base_model.model.model.embed_tokens.base_layer.weight"), sd.keySet().toString());
            assertTrue(sd.containsKey("base_model.model.lm_head.base_layer.weight"), sd.keySet().toString());
            peft.save(tmp);
            try (TransformerModel other = TinyModels.llama()) {
                Param w = other.parameters().get(EMB + ".weight");
                w.array().muli(Ops.scalar(w.array(), 0.5)); // a different base embedding
                PeftModel again = PeftModel.wrap(other);
                again.loadAdapter(tmp, "default", false);
                assertEquals(0.0, Fixtures.maxAbsDiff(other.parameters().get(EMB + ".base_layer.weight").array(),
                        model.parameters().get(EMB + ".base_layer.weight").array()), "HF loads the saved base embedding");
            }
            // a regex naming embed_tokens counts too; a list naming only projections does not
            try (TransformerModel third = TinyModels.llama()) {
                PeftModel regex = PeftModel.wrap(third);
                LoraConfig c = new LoraConfig().r(2);
                c.targetModules(ModuleSpec.regex(".*embed_tokens"));
                regex.addAdapter("r", c);
                assertTrue(regex.adapter("r").stateDict().containsKey("base_model.model.model.embed_tokens.base_layer.weight"));
                PeftModel plain = PeftModel.wrap(TinyModels.llama());
                plain.addAdapter("p", new LoraConfig().r(2).targetModules("q_proj"));
                assertFalse(plain.adapter("p").stateDict().keySet().stream().anyMatch(k -> k.contains("base_layer")));
            }
        }
    }

    @Test
    void thePaddingRowOfTheEmbeddingGetsNoGradientAsHf() {
        com.fasterxml.jackson.databind.JsonNode hf = Fixtures.json("bert_lora_embedding", "meta.json");
        assertEquals(0, hf.get("padding_idx").asInt());
        assertEquals(0.0, hf.get("pad_id_as_real_token_grad_lora_embedding_A_column_pad").asDouble(), "HF");
        assertTrue(hf.get("pad_id_as_real_token_grad_lora_embedding_A_column_5").asDouble() > 0, "HF");
        try (TransformerModel model = TinyModels.bert(TaskType.SEQ_CLS); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(2).initLoraWeights(false).targetModules("word_embeddings"));
            NDArray ids = m.create(new long[] {5, 0, 7, 0, 9, 3}, new Shape(2, 3)); // pad id 0 as a real token
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(peft.forward(ModelInput.of(ids, null)).logits().sum());
            }
            NDArray grad = peft.trainableParameters().get("bert.embeddings.word_embeddings.lora_embedding_A.default").array().getGradient();
            assertEquals(0f, grad.get(":, 0").abs().sum().getFloat(), "padding_idx 0 (BertConfig's pad_token_id)");
            assertTrue(grad.get(":, 5").abs().sum().getFloat() > 0);
        }
    }

    @Test
    void bertWordEmbeddingsTakeLoraWithTheClassifierSaved() throws java.io.IOException {
        try (TransformerModel model = TinyModels.bert(TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(2).targetModules("word_embeddings"));
            peft.save(tmp);
            java.util.Set<String> sd;
            try (io.github.peft4j.io.SafeTensorsFile f = io.github.peft4j.io.SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                sd = new java.util.TreeSet<>(f.names());
            }
            assertTrue(sd.contains("base_model.model.bert.embeddings.word_embeddings.lora_embedding_A"), sd.toString());
            assertTrue(sd.contains("base_model.model.classifier.weight"), sd.toString());
            assertFalse(sd.stream().anyMatch(k -> k.contains("base_layer")), sd.toString());
        }
    }
}
