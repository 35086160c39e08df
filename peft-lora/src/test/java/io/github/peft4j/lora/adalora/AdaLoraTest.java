package io.github.peft4j.lora.adalora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks.TrainingStep;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** AdaLoRA on tiny in-process models: gradients, budget schedule, training with masking, files, config checks. */
class AdaLoraTest {
    private static final String Q = "model.layers.0.self_attn.q_proj";
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    private static AdaLoraConfig config() {
        return new AdaLoraConfig().initR(3).targetR(1).loraAlpha(6).totalStep(10).targetModules("q_proj", "v_proj");
    }

    private static NDArray loss(PeftModel peft, AdaLoraAdapter a, NDArray ids, NDArray w) {
        NDArray task = peft.forward(ModelInput.of(ids, null)).logits().mul(w).sum();
        return task.add(a.extraLoss(new TrainingStep(1, 10)));
    }

    /** Backward through the SVD layer and the orthogonal regulariser equals central finite differences for A, E, B. */
    @Test
    void gradientsOfTheLayerAndTheRegulariserMatchFiniteDifferences() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(11);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", config().initLoraWeights(false).loraAlpha(0.3));
            NDArray ids = TinyModels.ids(m, 2, 6, 1);
            Engine.getInstance().setRandomSeed(3);
            NDArray w = m.randomNormal(new Shape(2, 6, 128));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(loss(peft, a, ids, w));
            }
            Map<String, Param> trainable = peft.trainableParameters();
            assertEquals(12, trainable.size(), trainable.keySet().toString());
            int checked = 0;
            for (String name : List.of(Q + ".lora_A.default", Q + ".lora_E.default", Q + ".lora_B.default",
                    "model.layers.1.self_attn.v_proj.lora_E.default")) {
                Param p = trainable.get(name);
                float[] grad = p.array().getGradient().toFloatArray();
                for (int idx : new int[] {0, 2}) {
                    double fd = TinyModels.finiteDifference(p, idx, 1e-2f, () -> {
                        try (NDScope scope = new NDScope()) {
                            return (double) loss(peft, a, ids, w).getFloat();
                        }
                    });
                    assertEquals(fd, grad[idx], 2e-2 * Math.max(1, Math.abs(fd)), name + "[" + idx + "]");
                    checked++;
                }
            }
            assertEquals(8, checked);
        }
    }

    /** The regulariser is HF's formula: orth_reg_weight · mean over A's and B's of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F. */
    @Test
    void regulariserIsTheMeanFrobeniusDistanceFromOrthogonality() {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", config().orthRegWeight(0.25));
            double sum = 0;
            int n = 0;
            for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
                NDArray p = e.getValue().array();
                NDArray cov = e.getKey().contains("lora_A") ? p.matMul(p.transpose())
                        : e.getKey().contains("lora_B") ? p.transpose().matMul(p) : null;
                if (cov != null) {
                    float[] c = cov.toFloatArray();
                    int r = (int) cov.getShape().get(0);
                    double sq = 0;
                    for (int i = 0; i < r; i++) {
                        for (int j = 0; j < r; j++) {
                            double d = c[i * r + j] - (i == j ? 1 : 0);
                            sq += d * d;
                        }
                    }
                    sum += Math.sqrt(sq);
                    n++;
                }
            }
            assertEquals(8, n);
            assertEquals(0.25 * sum / n, a.extraLoss(new TrainingStep(1, 10)).getFloat(), 1e-5);
            AdaLoraAdapter none = (AdaLoraAdapter) peft.addAdapter("off", config().orthRegWeight(0));
            assertNull(none.extraLoss(new TrainingStep(1, 10)));
        }
    }

    /** The budget of every step equals what HF's RankAllocator.budget_schedule gave in the fixture run. */
    @Test
    void budgetScheduleIsHfs() {
        JsonNode train = Fixtures.json("llama_adalora_train", "train.json");
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", new AdaLoraConfig().initR(4).targetR(1).tinit(2)
                    .tfinal(3).deltaT(1).totalStep(10).targetModules("q_proj", "v_proj", "down_proj"));
            List<Long> ours = new ArrayList<>();
            List<Long> hf = new ArrayList<>();
            for (JsonNode s : train.get("steps_detail")) {
                ours.add(a.budget(s.get("step").asLong()));
                hf.add(s.get("budget").asLong());
            }
            assertEquals(List.of(24L, 24L, 15L, 9L, 7L, 6L, 6L, 6L, 6L, 6L), hf);
            assertEquals(hf, ours);
        }
    }

    static List<Example> data(int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[6 + r.nextInt(5)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            out.add(Example.tokens(ids));
        }
        return out;
    }

    /**
     * Training lowers the loss; the allocator ends at the target budget with the cut E entries zero; the saved file
     * holds the cut tensors and rank_pattern, and loads into a fresh model with the same logits.
     */
    @Test
    void trainingMasksToTheTargetAndTheCutAdapterReloadsWithTheSameLogits() throws Exception {
        List<Double> losses;
        NDArray trainedLogits;
        Map<String, List<Boolean>> pattern;
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager();
                AdamW adamw = AdamW.builder().weightDecay(0.01).build()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(5);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", new AdaLoraConfig().initR(4).targetR(2).tinit(3)
                    .tfinal(3).totalStep(20).targetModules("q_proj", "v_proj", "o_proj"));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data(8, 3)).optOptimizer(adamw)
                    .optLearningRate(0.02).optMaxSteps(20).optBatchSize(4).optShuffle(false).build()) {
                losses = t.train().losses();
            }
            pattern = a.rankPattern();
            assertNotNull(pattern);
            long kept = pattern.values().stream().flatMap(List::stream).filter(x -> x).count();
            assertTrue(kept <= 12 && kept >= 1, "kept " + kept + " of 24 (target budget 12)");
            for (Map.Entry<String, List<Boolean>> e : pattern.entrySet()) {
                float[] ev = model.parameters().get(e.getKey() + ".lora_E.default").array().toFloatArray();
                for (int i = 0; i < ev.length; i++) {
                    if (!e.getValue().get(i)) {
                        assertEquals(0f, Math.abs(ev[i]), e.getKey() + " E[" + i + "] is cut");
                    } else {
                        assertTrue(ev[i] != 0f, e.getKey() + " E[" + i + "] is kept");
                    }
                }
            }
            NDArray ids = TinyModels.ids(m, 2, 7, 9);
            trainedLogits = peft.forward(ModelInput.of(ids, null)).logits();
            peft.save(tmp);
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                for (Map.Entry<String, List<Boolean>> e : pattern.entrySet()) {
                    long r = e.getValue().stream().filter(x -> x).count();
                    String k = "base_model.model." + e.getKey();
                    assertEquals(new Shape(r, 64), f.load(k + ".lora_A", m).getShape(), k);
                    assertEquals(new Shape(r, 1), f.load(k + ".lora_E", m).getShape(), k);
                    assertEquals(r, f.load(k + ".lora_B", m).getShape().get(1), k);
                }
            }
            JsonNode cfg = JSON.readTree(tmp.resolve("adapter_config.json").toFile());
            assertEquals(pattern.size(), cfg.get("rank_pattern").size());
            assertTrue(cfg.get("rank_pattern").has(Q + ".lora_E"), cfg.get("rank_pattern").toString());
            assertTrue(cfg.has("deltaT") && !cfg.has("delta_t"), "HF's key is deltaT");
            try (TransformerModel fresh = TinyModels.llama()) {
                PeftModel again = PeftModel.wrap(fresh);
                AdaLoraAdapter b = (AdaLoraAdapter) again.loadAdapter(tmp, "default", false);
                double d = Fixtures.maxAbsDiff(again.forward(ModelInput.of(ids, null)).logits(), trainedLogits);
                System.out.printf("adalora tiny llama: losses %.4f -> %.4f, kept %d of 24, reloaded logits max|diff| = %.3g%n",
                        losses.get(0), losses.get(losses.size() - 1), kept, d);
                assertTrue(d < 1e-5, "reloaded: " + d);
                assertEquals(pattern, b.rankPattern());
                b.ranks().forEach((p, r) -> assertEquals(pattern.get(p).stream().filter(x -> x).count(), (long) r, p));
            }
        }
        double first = losses.get(0);
        double last = (losses.get(17) + losses.get(18) + losses.get(19)) / 3;
        assertTrue(last < first - 0.05, "loss should go down: " + losses);
    }

    @Test
    void configReadsAndWritesHfKeysAndChecksValues() throws Exception {
        String json = "{\"peft_type\":\"ADALORA\",\"init_r\":6,\"target_r\":2,\"deltaT\":5,\"total_step\":100,\"tinit\":10,"
                + "\"tfinal\":20,\"beta1\":0.8,\"beta2\":0.9,\"orth_reg_weight\":0.1,\"target_modules\":[\"q_proj\"],"
                + "\"rank_pattern\":{\"model.layers.0.self_attn.q_proj.lora_E\":[true,false,true,true,false,false]},"
                + "\"some_new_key\":1}";
        AdaLoraConfig c = (AdaLoraConfig) PeftMethods.parse(json, "test");
        assertEquals(6, c.initR());
        assertEquals(5, c.deltaT());
        assertEquals(0.9, c.beta2());
        assertEquals(List.of(true, false, true, true, false, false), c.rankPattern().get("model.layers.0.self_attn.q_proj.lora_E"));
        JsonNode back = JSON.readTree(PeftMethods.toJson(c));
        assertEquals(5, back.get("deltaT").asInt());
        assertFalse(back.has("delta_t"));
        assertEquals(100, back.get("total_step").asInt());
        for (String[] bad : new String[][] {
            {"\"total_step\":null", "'total_step' must be given"},
            {"\"tinit\":80", "'tinit' (80) must be < total_step - tfinal"},
            {"\"use_dora\":true", "'use_dora' is not supported by ADALORA"},
            {"\"orth_reg_weight\":-1", "'orth_reg_weight' must be >= 0"},
            {"\"beta1\":1.0", "'beta1' and 'beta2' must be in (0, 1)"}}) {
            ObjectNode n = (ObjectNode) JSON.readTree(json);
            JsonNode patch = JSON.readTree("{" + bad[0] + "}");
            patch.fields().forEachRemaining(e -> n.set(e.getKey(), e.getValue()));
            PeftException e = assertThrows(PeftException.class, () -> PeftMethods.parse(n.toString(), "cfg.json"));
            assertTrue(e.getMessage().contains(bad[1]) && e.getMessage().startsWith("cfg.json"), e.getMessage());
        }
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            PeftConfig defaults = peft.addAdapter("d", new AdaLoraConfig().totalStep(10)).config();
            assertEquals("[q_proj, v_proj]", ((AdaLoraConfig) defaults).targetModules().nameList().toString());
        }
    }

    /** A file whose rank_pattern names a module the adapter does not have fails naming the key. */
    @Test
    void rankPatternNamingAnotherModuleIsAnError() throws Exception {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config());
            peft.save(tmp);
            Path cfg = tmp.resolve("adapter_config.json");
            ObjectNode n = (ObjectNode) JSON.readTree(cfg.toFile());
            n.set("rank_pattern", JSON.readTree("{\"model.layers.0.mlp.up_proj.lora_E\":[true,true,false]}"));
            Files.writeString(cfg, n.toString());
            try (TransformerModel fresh = TinyModels.llama()) {
                PeftException e = assertThrows(PeftException.class, () -> PeftModel.wrap(fresh).loadAdapter(tmp, "x", false));
                assertTrue(e.getMessage().contains("rank_pattern key 'model.layers.0.mlp.up_proj.lora_E'"), e.getMessage());
                assertTrue(e.getMessage().startsWith(tmp.resolve("adapter_config.json").toString()), e.getMessage());
                assertTrue(fresh.resolve(Q) instanceof io.github.peft4j.nn.Linear, "nothing was wrapped");
            }
        }
    }

    /** A rank_pattern given in a new adapter's config masks lora_E from the start; saving cuts by it (as HF saves). */
    @Test
    void aRankPatternInTheConfigMasksAndCutsFromTheStart() throws Exception {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", config().initLoraWeights(false)
                    .rankPattern(Map.of(Q + ".lora_E", List.of(true, false, true))));
            float[] e = model.parameters().get(Q + ".lora_E.default").array().toFloatArray();
            assertEquals(0f, Math.abs(e[1]));
            assertTrue(e[0] != 0 && e[2] != 0);
            assertEquals(List.of(true, false, true), a.rankPattern().get(Q));
            peft.save(tmp);
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(new Shape(2, 64), f.load("base_model.model." + Q + ".lora_A", m).getShape());
                assertEquals(new Shape(64, 2), f.load("base_model.model." + Q + ".lora_B", m).getShape());
                assertEquals(new Shape(3, 64), f.load("base_model.model.model.layers.1.self_attn.q_proj.lora_A", m).getShape());
            }
            assertEquals("{\"" + Q + ".lora_E\":[true,false,true]}",
                    JSON.readTree(tmp.resolve("adapter_config.json").toFile()).get("rank_pattern").toString());
        }
    }

    private static List<Double> run(ai.djl.ndarray.types.DataType dtype, List<Map<String, List<Boolean>>> pattern) {
        try (TransformerModel model = TinyModels.llama(dtype); AdamW adamw = AdamW.builder().weightDecay(0.01).build()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(5);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", new AdaLoraConfig().initR(4).targetR(2).tinit(1)
                    .tfinal(2).totalStep(8).targetModules("q_proj", "v_proj"));
            peft.trainableParameters().values().forEach(p -> assertEquals(ai.djl.ndarray.types.DataType.FLOAT32,
                    p.array().getDataType(), "trainable leaves stay fp32"));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data(8, 3)).optOptimizer(adamw)
                    .optLearningRate(0.02).optMaxSteps(8).optBatchSize(4).optShuffle(false).build()) {
                List<Double> losses = t.train().losses();
                pattern.add(a.rankPattern());
                return losses;
            }
        }
    }

    /** fp16 compute (CPU; fp32 adapter leaves, loss scaling) tracks the fp32 run, masking included. */
    @Test
    void fp16TrainingTracksFp32() {
        List<Map<String, List<Boolean>>> patterns = new ArrayList<>();
        List<Double> fp32 = run(ai.djl.ndarray.types.DataType.FLOAT32, patterns);
        List<Double> fp16 = run(ai.djl.ndarray.types.DataType.FLOAT16, patterns);
        double worst = 0;
        for (int i = 0; i < fp32.size(); i++) {
            worst = Math.max(worst, Math.abs(fp32.get(i) - fp16.get(i)));
        }
        System.out.printf("adalora fp16 vs fp32, 8 AdamW steps: losses max|diff| = %.3g, same rank pattern = %s%n", worst,
                patterns.get(0).equals(patterns.get(1)));
        assertTrue(worst < 0.05, fp32 + " vs " + fp16);
        for (Map<String, List<Boolean>> p : patterns) {
            assertEquals(8, p.values().stream().flatMap(List::stream).filter(x -> x).count(), "kept = target budget 2 x 4");
        }
    }
}
