package io.github.peft4j.lora.moe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Mergeable;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.RowRouted;
import io.github.peft4j.peft.TrainingHooks.TrainingStep;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Mixture of LoRA experts on tiny models: LoRA equivalences, gates, gradients, files, merge refusal, training. */
class MoeLoraTest {
    private static final String Q = "model.layers.0.self_attn.q_proj";
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    private static MoeLoraConfig moe(int experts, int topK) {
        MoeLoraConfig c = new MoeLoraConfig().numExperts(experts).topK(topK).r(4).loraAlpha(8).initLoraWeights(false);
        return c.targetModules("q_proj", "v_proj");
    }

    private static NDArray logits(PeftModel peft, NDArray ids) {
        return peft.forward(ModelInput.of(ids, null)).logits();
    }

    private static void set(Param p, NDArray v) {
        p.set(Ops.ownedCopy(v.reshape(p.shape()), p.array().getManager(), DataType.FLOAT32));
    }

    /** One expert with top-1: the gate is exactly 1, so the mixture is LoRA with the same A and B, bit for bit. */
    @Test
    void oneExpertIsExactlyLora() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(1);
            peft.addAdapter("lora", new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false).targetModules("q_proj", "v_proj"));
            peft.addAdapter("moe", moe(1, 1));
            Map<String, Param> all = model.parameters();
            int copied = 0;
            for (String path : List.of(Q, "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj",
                    "model.layers.1.self_attn.v_proj")) {
                String inner = path + ".base_layer"; // the LoRA wrapper sits inside the mixture's
                set(all.get(path + ".moe_lora_A.moe.weight"), all.get(inner + ".lora_A.lora.weight").array());
                set(all.get(path + ".moe_lora_B.moe.weight"), all.get(inner + ".lora_B.lora.weight").array());
                copied++;
            }
            assertEquals(4, copied);
            NDArray ids = TinyModels.ids(m, 2, 7, 3);
            peft.setActive("lora");
            NDArray lora = logits(peft, ids);
            peft.setActive("moe");
            NDArray mixture = logits(peft, ids);
            try (AutoCloseable off = peft.disabled()) {
                assertTrue(Fixtures.maxAbsDiff(logits(peft, ids), lora) > 1e-3, "the adapters change the logits");
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            double d = Fixtures.maxAbsDiff(mixture, lora);
            System.out.printf("moe-lora: one expert vs LoRA max|diff| = %.3g%n", d);
            assertEquals(0.0, d, "one expert must be LoRA exactly");
        }
    }

    /**
     * A constant router (zero weights: every gate 1/E) with top-k = E is the sum of E LoRA adapters with the experts'
     * weights at scale s/E; and a learned router with top-k = E gives the softmax-weighted sum of the experts.
     */
    @Test
    void aConstantRouterWithAllExpertsIsTheWeightedSumOfTheExperts() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(2);
            int e = 3;
            peft.addAdapter("moe", moe(e, e));
            List<String> paths = List.of(Q, "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj",
                    "model.layers.1.self_attn.v_proj");
            String[] names = new String[e];
            for (int x = 0; x < e; x++) {
                names[x] = "e" + x;
                peft.addAdapter(names[x], new LoraConfig().r(4).loraAlpha(8.0 / e).targetModules("q_proj", "v_proj"));
            }
            Map<String, Param> all = model.parameters();
            for (String path : paths) {
                String inner = path + ".base_layer"; // the mixture came first: the LoRA wrapper is around it
                Param router = all.get(inner + ".moe_router.moe.weight");
                set(router, router.array().zerosLike());
                NDArray a = all.get(inner + ".moe_lora_A.moe.weight").array();
                NDArray b = all.get(inner + ".moe_lora_B.moe.weight").array();
                for (int x = 0; x < e; x++) {
                    set(all.get(path + ".lora_A." + names[x] + ".weight"), a.get(x));
                    set(all.get(path + ".lora_B." + names[x] + ".weight"), b.get(x));
                }
            }
            NDArray ids = TinyModels.ids(m, 2, 6, 4);
            peft.setActive("moe");
            NDArray mixture = logits(peft, ids);
            peft.setActive(names);
            NDArray sum = logits(peft, ids);
            double d = Fixtures.maxAbsDiff(mixture, sum);
            System.out.printf("moe-lora: constant router, top-k = %d, vs the sum of %d LoRA adapters at s/%d max|diff| = %.3g%n",
                    e, e, e, d);
            assertTrue(d < 1e-5, "constant router: " + d);
        }
    }

    /** The gates: softmax of the router, zero outside each token's top-k, renormalised; the layer adds Σ g_e B_e A_e x s. */
    @Test
    void gatesAreTheRenormalisedTopKOfTheSoftmaxAndWeightTheExperts() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(3);
            MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("default", moe(4, 2));
            MoeLoraLayer layer = a.moeLayers().get(Q);
            Engine.getInstance().setRandomSeed(9);
            NDArray x = m.randomNormal(new Shape(2, 5, 64));
            float[] g = layer.gates("default", x).toFloatArray();
            Map<String, Param> all = model.parameters();
            NDArray router = all.get(Q + ".moe_router.default.weight").array();
            float[] p = x.matMul(router.transpose()).softmax(-1).toFloatArray();
            NDArray expected = m.zeros(new Shape(2, 5, 64));
            NDArray wa = all.get(Q + ".moe_lora_A.default.weight").array();
            NDArray wb = all.get(Q + ".moe_lora_B.default.weight").array();
            float[] gatesExpected = new float[g.length];
            for (int t = 0; t < 10; t++) {
                float[] row = java.util.Arrays.copyOfRange(p, 4 * t, 4 * t + 4);
                float[] sorted = row.clone();
                java.util.Arrays.sort(sorted);
                float kth = sorted[2];
                double kept = 0;
                for (float v : row) {
                    kept += v >= kth ? v : 0;
                }
                int nonzero = 0;
                double s = 0;
                for (int j = 0; j < 4; j++) {
                    gatesExpected[4 * t + j] = row[j] >= kth ? (float) (row[j] / kept) : 0f;
                    nonzero += g[4 * t + j] != 0f ? 1 : 0;
                    s += g[4 * t + j];
                }
                assertEquals(2, nonzero, "token " + t);
                assertEquals(1.0, s, 1e-6, "token " + t);
            }
            for (int i = 0; i < g.length; i++) {
                assertEquals(gatesExpected[i], g[i], 1e-6, "gate " + i);
            }
            NDArray gates = m.create(gatesExpected, new Shape(2, 5, 4));
            for (int j = 0; j < 4; j++) {
                NDArray term = x.matMul(wa.get(j).transpose()).matMul(wb.get(j).transpose()).mul(2.0f); // s = 8 / 4
                expected = expected.add(term.mul(gates.get(":, :, " + j + ":" + (j + 1))));
            }
            NDArray base = ((io.github.peft4j.nn.Layer) layer.baseModule()).forward(x);
            double d = Fixtures.maxAbsDiff(layer.forward(x).sub(base), expected);
            System.out.printf("moe-lora: top-2 of 4 layer term vs Σ g_e B_e A_e x s max|diff| = %.3g%n", d);
            assertTrue(d < 1e-5, "layer term: " + d);
        }
    }

    private static NDArray loss(PeftModel peft, MoeLoraAdapter a, NDArray ids, NDArray w) {
        NDArray task = logits(peft, ids).mul(w).sum();
        NDArray extra = a.extraLoss(new TrainingStep(1, 10));
        assertNotNull(extra, "training mode keeps the balance term");
        return task.add(extra);
    }

    /**
     * Backward through the experts, the gates and the balance loss equals central finite differences (router
     * included): with every expert kept (smooth everywhere) and with top-2 of 3 (the experts of the last routed layer,
     * whose output no router reads, and routers with a step too small to change a token's experts).
     */
    @Test
    void gradientsMatchFiniteDifferencesRouterIncluded() {
        double worst = 0;
        int checked = 0;
        for (int topK : new int[] {3, 2}) {
            try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(model);
                Engine.getInstance().setRandomSeed(11);
                MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("default", moe(3, topK).routerAuxLossCoef(2.0).loraAlpha(2));
                model.train(true); // the balance term is kept in training mode (no dropout here)
                NDArray ids = TinyModels.ids(m, 2, 6, 1);
                Engine.getInstance().setRandomSeed(3);
                NDArray w = m.randomNormal(new Shape(2, 6, 128));
                try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                    gc.backward(loss(peft, a, ids, w));
                }
                Map<String, Param> trainable = peft.trainableParameters();
                assertEquals(12, trainable.size(), trainable.keySet().toString());
                String last = "model.layers.1.self_attn.v_proj"; // no routed layer reads its output
                List<String> names = topK == 3 ? List.of(Q + ".moe_router.default.weight", Q + ".moe_lora_A.default.weight",
                        Q + ".moe_lora_B.default.weight", last + ".moe_router.default.weight")
                        : List.of(last + ".moe_router.default.weight", last + ".moe_lora_A.default.weight",
                                last + ".moe_lora_B.default.weight", Q + ".moe_router.default.weight");
                for (String name : names) {
                    Param p = trainable.get(name);
                    float[] grad = p.array().getGradient().toFloatArray();
                    // top-2: A and B of the last layer change no routing; a router entry counts only where the
                    // difference quotients at two steps agree (no token changes its experts within the step)
                    boolean kinked = topK == 2 && name.contains("router");
                    int done = 0;
                    for (int idx : new int[] {0, 5, 70, 100, 140, 190, 230}) {
                        java.util.function.Supplier<Double> f = () -> {
                            try (NDScope scope = new NDScope()) {
                                return (double) loss(peft, a, ids, w).getFloat();
                            }
                        };
                        double fd = TinyModels.finiteDifference(p, idx, 1e-2f, f);
                        if (kinked && Math.abs(TinyModels.finiteDifference(p, idx, 5e-3f, f) - fd) > 1e-2 * Math.max(1, Math.abs(fd))) {
                            continue;
                        }
                        worst = Math.max(worst, Math.abs(fd - grad[idx]) / Math.max(1, Math.abs(fd)));
                        assertEquals(fd, grad[idx], 2e-2 * Math.max(1, Math.abs(fd)), "top-" + topK + " " + name + "[" + idx + "]");
                        checked++;
                        if (++done == 3) {
                            break;
                        }
                    }
                    assertEquals(3, done, name + ": smooth entries");
                }
                float[] routerGrad = trainable.get(Q + ".moe_router.default.weight").array().getGradient().toFloatArray();
                assertTrue(java.util.Arrays.stream(toDouble(routerGrad)).map(Math::abs).max().orElse(0) > 1e-4, "the router learns");
            }
        }
        assertEquals(24, checked);
        System.out.printf("moe-lora: gradients vs finite differences, worst relative diff %.3g over %d entries%n", worst, checked);
    }

    private static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /** The balance term is E · Σ f_e P_e per layer (= top_k for uniform routing), averaged and times the coefficient. */
    @Test
    void balanceLossIsTheSwitchFormAveragedOverLayers() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(4);
            MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("default", moe(4, 2).routerAuxLossCoef(0.5));
            NDArray ids = TinyModels.ids(m, 2, 6, 5);
            logits(peft, ids);
            assertNull(a.extraLoss(new TrainingStep(1, 1)), "nothing is kept outside training mode");
            model.train(true);
            for (MoeLoraLayer l : a.moeLayers().values()) { // uniform routing: f_e = 2/4, P_e = 1/4
                Param router = l.adapterParameters("default").get("moe_router.default.weight");
                set(router, router.array().zerosLike());
            }
            logits(peft, ids);
            double uniform = a.extraLoss(new TrainingStep(1, 1)).getFloat();
            assertNull(a.extraLoss(new TrainingStep(1, 1)), "the term is taken once");
            assertEquals(0.5 * 2, uniform, 1e-6, "uniform routing gives top_k");
            Engine.getInstance().setRandomSeed(8);
            MoeLoraAdapter b = (MoeLoraAdapter) peft.addAdapter("b", moe(4, 2).routerAuxLossCoef(1));
            model.train(true);
            peft.setActive("b");
            logits(peft, ids);
            double got = b.extraLoss(new TrainingStep(1, 1)).getFloat();
            // by hand for every layer: the layer input is needed, so recompute from the gates of each layer's own input
            double sum = 0;
            for (Map.Entry<String, MoeLoraLayer> e : b.moeLayers().entrySet()) {
                NDArray x = capturedInput(peft, model, e.getKey(), ids);
                float[] g = e.getValue().gates("b", x).toFloatArray();
                Param router = e.getValue().adapterParameters("b").get("moe_router.b.weight");
                float[] p = x.matMul(router.array().transpose()).softmax(-1).toFloatArray();
                double[] f = new double[4];
                double[] pm = new double[4];
                int tokens = p.length / 4;
                for (int t = 0; t < tokens; t++) {
                    for (int j = 0; j < 4; j++) {
                        f[j] += g[4 * t + j] > 0 ? 1.0 / tokens : 0;
                        pm[j] += p[4 * t + j] / tokens;
                    }
                }
                double layer = 0;
                for (int j = 0; j < 4; j++) {
                    layer += f[j] * pm[j];
                }
                sum += 4 * layer;
            }
            assertEquals(sum / 4, got, 1e-5);
            assertTrue(got > 2, "learned routing is less balanced than uniform: " + got);
        }
    }

    /** The input of a layer in a forward call (a wrapper that records it, put in and taken out again). */
    private static NDArray capturedInput(PeftModel peft, TransformerModel model, String path, NDArray ids) {
        MoeLoraLayer layer = (MoeLoraLayer) model.resolve(path);
        NDArray[] seen = new NDArray[1];
        int dot = path.lastIndexOf('.');
        io.github.peft4j.nn.Module parent = model.resolve(path.substring(0, dot));
        Recorder rec = new Recorder(layer, seen);
        parent.replace(path.substring(dot + 1), rec);
        try {
            logits(peft, ids);
        } finally {
            parent.replace(path.substring(dot + 1), layer);
        }
        return seen[0];
    }

    /** Records the input of the layer it stands for. */
    private static final class Recorder extends io.github.peft4j.nn.Module implements io.github.peft4j.nn.Layer {
        private final MoeLoraLayer inner;
        private final NDArray[] seen;

        Recorder(MoeLoraLayer inner, NDArray[] seen) {
            this.inner = inner;
            this.seen = seen;
        }

        @Override
        public NDArray forward(NDArray x) {
            seen[0] = x;
            return inner.forward(x);
        }
    }

    /** Saved keys and shapes as documented; a fresh model loads the file with the same logits; HF-style config keys. */
    @Test
    void savesAndLoadsWithItsOwnLayout() throws Exception {
        try (TransformerModel model = TinyModels.gpt2(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(6);
            peft.addAdapter("default", new MoeLoraConfig().numExperts(3).topK(2).r(2).loraAlpha(4).initLoraWeights(false)
                    .targetModules("c_attn", "c_fc"));
            NDArray ids = TinyModels.ids(m, 2, 5, 6);
            NDArray before = logits(peft, ids);
            peft.save(tmp);
            JsonNode cfg = JSON.readTree(tmp.resolve("adapter_config.json").toFile());
            assertEquals("MOE_LORA", cfg.get("peft_type").asText());
            assertEquals(3, cfg.get("num_experts").asInt());
            assertEquals(2, cfg.get("top_k").asInt());
            assertEquals(0.01, cfg.get("router_aux_loss_coef").asDouble());
            assertEquals(2, cfg.get("r").asInt());
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(12, f.names().size(), f.names().toString());
                String k = "base_model.model.transformer.h.0.attn.c_attn.";
                assertEquals(new Shape(3, 64), f.load(k + "moe_router.weight", m).getShape());
                assertEquals(new Shape(3, 2, 64), f.load(k + "moe_lora_A.weight", m).getShape());
                assertEquals(new Shape(3, 192, 2), f.load(k + "moe_lora_B.weight", m).getShape());
                assertEquals(new Shape(3, 256, 2), f.load("base_model.model.transformer.h.1.mlp.c_fc.moe_lora_B.weight", m).getShape());
            }
            try (TransformerModel fresh = TinyModels.gpt2()) {
                PeftModel again = PeftModel.wrap(fresh);
                Engine.getInstance().setRandomSeed(99);
                again.loadAdapter(tmp, "default", false);
                double d = Fixtures.maxAbsDiff(logits(again, ids), before);
                System.out.printf("moe-lora gpt2: reloaded logits max|diff| = %.3g%n", d);
                assertEquals(0.0, d, 1e-6);
            }
            // a file of another expert count is refused with the key and both shapes
            MoeLoraConfig other = PeftMethods.copy((MoeLoraConfig) peft.adapter("default").config()).numExperts(2);
            try (TransformerModel fresh = TinyModels.gpt2()) {
                PeftModel p2 = PeftModel.wrap(fresh);
                p2.addAdapter("default", other);
                Map<String, NDArray> file;
                try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                    file = new java.util.LinkedHashMap<>();
                    for (String k : f.names()) {
                        file.put(k, f.load(k, m));
                    }
                }
                PeftException e = assertThrows(PeftException.class, () -> p2.adapter("default").loadStateDict(file, "x.safetensors"));
                assertTrue(e.getMessage().contains("moe_") && e.getMessage().contains("(3, "), e.getMessage());
            }
        }
    }

    /** No merge: a clear error naming the reason; the mixture runs per row in a mixed-adapter batch. */
    @Test
    void mergeIsRefusedAndMixedBatchesRoute() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(12);
            MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("moe", moe(4, 2));
            assertNull(a.capability(Mergeable.class));
            assertNotNull(a.capability(RowRouted.class));
            PeftException e = assertThrows(PeftException.class, () -> peft.merge("moe"));
            assertTrue(e.getMessage().contains("MOE_LORA adapter 'moe' cannot be merged")
                    && e.getMessage().contains("depends on each token's routing"), e.getMessage());
            assertThrows(PeftException.class, peft::mergeAndUnload);
            NDArray ids = TinyModels.ids(m, 2, 6, 7);
            NDArray alone = logits(peft, ids);
            NDArray base;
            try (AutoCloseable off = peft.disabled()) {
                base = logits(peft, ids);
            } catch (Exception x) {
                throw new IllegalStateException(x);
            }
            NDArray mixed = peft.forward(ModelInput.of(ids, null).withRowAdapters(List.of("__base__", "moe"))).logits();
            assertTrue(Fixtures.maxAbsDiff(mixed.get("0"), base.get("0")) < 1e-5);
            assertTrue(Fixtures.maxAbsDiff(mixed.get("1"), alone.get("1")) < 1e-5);
            assertTrue(Fixtures.maxAbsDiff(alone.get("1"), base.get("1")) > 1e-3);
        }
    }

    static List<Example> data(int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[8];
            int start = 1 + r.nextInt(60);
            for (int j = 0; j < ids.length; j++) {
                ids[j] = (start + 3 * j) % 127 + 1; // a learnable pattern: arithmetic sequences
            }
            out.add(Example.tokens(ids));
        }
        return out;
    }

    /** It trains on a tiny task with the balance loss: the loss goes down and the routers move. */
    @Test
    void trainsOnATinyTask() {
        try (TransformerModel model = TinyModels.llama(); AdamW adamw = AdamW.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(5);
            MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("default", new MoeLoraConfig().numExperts(4).topK(2).r(4)
                    .loraAlpha(8).routerAuxLossCoef(0.01).targetModules("q_proj", "v_proj", "o_proj", "down_proj"));
            float[] router0 = model.parameters().get(Q + ".moe_router.default.weight").array().toFloatArray();
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data(16, 1)).optOptimizer(adamw)
                    .optLearningRate(1e-2).optMaxSteps(30).optBatchSize(4).optSeed(1).build()) {
                losses = t.train().losses();
            }
            float[] router1 = model.parameters().get(Q + ".moe_router.default.weight").array().toFloatArray();
            double moved = 0;
            for (int i = 0; i < router0.length; i++) {
                moved = Math.max(moved, Math.abs(router1[i] - router0[i]));
            }
            double first = (losses.get(0) + losses.get(1)) / 2;
            double last = (losses.get(27) + losses.get(28) + losses.get(29)) / 3;
            System.out.printf("moe-lora tiny llama: loss %.4f -> %.4f over 30 AdamW steps, router max|change| %.3g%n",
                    first, last, moved);
            assertTrue(last < first - 0.5, "loss should go down: " + losses);
            assertTrue(moved > 1e-3, "router moved " + moved);
            assertEquals(new TreeSet<>(List.of(Q, "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
                    "model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
                    "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.down_proj")), new TreeSet<>(a.moeLayers().keySet()));
        }
    }

    /** fp16 compute (fp32 leaves cast in forward, the router in fp32) tracks fp32, the balance term included. */
    @Test
    void fp16ComputeTracksFp32() {
        double[] balance = new double[2];
        float[][] out = new float[2][];
        DataType[] types = {DataType.FLOAT32, DataType.FLOAT16};
        for (int i = 0; i < 2; i++) {
            try (TransformerModel model = TinyModels.llama(types[i]); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(model);
                Engine.getInstance().setRandomSeed(13);
                MoeLoraAdapter a = (MoeLoraAdapter) peft.addAdapter("default", moe(4, 2));
                model.train(true);
                out[i] = Ops.cast(logits(peft, TinyModels.ids(m, 2, 6, 3)), DataType.FLOAT32).toFloatArray();
                balance[i] = a.extraLoss(new TrainingStep(1, 1)).getFloat();
                assertEquals(DataType.FLOAT32, model.parameters().get(Q + ".moe_router.default.weight").array().getDataType());
            }
        }
        double d = 0;
        for (int i = 0; i < out[0].length; i++) {
            d = Math.max(d, Math.abs(out[0][i] - out[1][i]));
        }
        System.out.printf("moe-lora fp16 vs fp32 logits max|diff| = %.3g, balance %.6f vs %.6f%n", d, balance[0], balance[1]);
        assertTrue(d < 0.05, "fp16: " + d);
        assertEquals(balance[0], balance[1], 1e-3);
    }

    @Test
    void configChecksValues() {
        PeftException e = assertThrows(PeftException.class,
                () -> PeftMethods.parse("{\"peft_type\":\"MOE_LORA\",\"num_experts\":2,\"top_k\":3,\"target_modules\":[\"q_proj\"]}", "cfg.json"));
        assertTrue(e.getMessage().contains("'top_k' must be in [1, num_experts = 2], found 3"), e.getMessage());
        e = assertThrows(PeftException.class,
                () -> PeftMethods.parse("{\"peft_type\":\"MOE_LORA\",\"router_aux_loss_coef\":-1,\"target_modules\":[\"q_proj\"]}", "cfg.json"));
        assertTrue(e.getMessage().contains("router_aux_loss_coef"), e.getMessage());
    }
}
