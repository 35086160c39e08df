package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.data.Example;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.lora.LoraLayer;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Gradient checkpointing ({@link PeftTrainer.Builder#optGradientCheckpointing}) gives the gradients of the plain step
 * within 1e-6 on every model family (tiny BERT, GPT-2 and Llama built in-process, the Mistral and Qwen2 fixture
 * bases) with LoRA, with dropout active in the model and in LoRA (the blocks draw the same masks when recomputed),
 * with gradient accumulation, and with a 4-bit NF4 base (QLoRA); and a short AdamW run gives the same losses and
 * weights with and without. The gradients are captured by an optimizer that records them and changes nothing.
 */
class GradientCheckpointingTest {
    /** Records every trainable gradient of each step; updates nothing. */
    static final class Capture implements Optimizer {
        final List<Map<String, float[]>> steps = new ArrayList<>();

        @Override
        public void update(Map<String, Param> params, double lr) {
            Map<String, float[]> m = new TreeMap<>();
            params.forEach((k, p) -> {
                NDArray g = Gradients.of(p);
                if (g != null) {
                    m.put(k, g.toFloatArray());
                    g.close();
                }
            });
            steps.add(m);
        }

        @Override
        public Map<String, NDArray> state() {
            return Map.of();
        }

        @Override
        public void loadState(Map<String, NDArray> state) {}

        @Override
        public long steps() {
            return steps.size();
        }

        @Override
        public void close() {}
    }

    static List<Example> lmExamples(int n, long seed) {
        return PeftTrainerTest.randomExamples(n, seed);
    }

    static List<Example> classified(int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[4 + r.nextInt(8)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            out.add(Example.classified(ids, r.nextInt(3)));
        }
        return out;
    }

    /** One step's gradients (no clipping, no shuffle), plain or checkpointed. */
    static Map<String, float[]> gradients(Supplier<TransformerModel> base, Function<TransformerModel, PeftModel> adapt,
            List<Example> data, int batch, int accumulation, boolean checkpoint) {
        try (TransformerModel model = base.get(); Capture capture = new Capture()) {
            PeftModel peft = adapt.apply(model);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(capture)
                    .optMaxSteps(1).optBatchSize(batch).optGradientAccumulation(accumulation).optShuffle(false)
                    .optMaxGradNorm(0).optGradientCheckpointing(checkpoint).build()) {
                t.train();
            }
            assertEquals(1, capture.steps.size());
            return capture.steps.get(0);
        }
    }

    /** Asserts equal gradients within 1e-6, every trainable tensor with a non-zero gradient; returns max|diff|. */
    static double assertSameGradients(String what, Supplier<TransformerModel> base, Function<TransformerModel, PeftModel> adapt,
            List<Example> data, int batch, int accumulation, int expectedTensors) {
        Map<String, float[]> plain = gradients(base, adapt, data, batch, accumulation, false);
        Map<String, float[]> ckpt = gradients(base, adapt, data, batch, accumulation, true);
        assertEquals(plain.keySet(), ckpt.keySet(), what);
        assertEquals(expectedTensors, plain.size(), what + ": tensors with a gradient " + plain.keySet());
        double worst = 0;
        for (String k : plain.keySet()) {
            float[] a = plain.get(k);
            float[] b = ckpt.get(k);
            assertEquals(a.length, b.length, k);
            double norm = 0;
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
                norm = Math.max(norm, Math.abs(a[i]));
            }
            assertTrue(norm > 0, what + ": zero gradient for " + k);
        }
        System.out.printf("gradient checkpointing %s: %d tensors, max|grad plain - grad checkpointed| = %.2e%n", what,
                plain.size(), worst);
        assertTrue(worst <= 1e-6, what + ": max|diff| " + worst);
        return worst;
    }

    static PeftModel lora(TransformerModel model, double dropout, boolean fanInFanOut, String... targets) {
        PeftModel peft = PeftModel.wrap(model);
        Engine.getInstance().setRandomSeed(11);
        peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).loraDropout(dropout).initLoraWeights(false)
                .fanInFanOut(fanInFanOut).targetModules(targets));
        return peft;
    }

    static TransformerModel random(String json, TaskType task) {
        Engine.getInstance().setRandomSeed(7);
        return Models.random(TinyModels.config(json), Device.cpu(), DataType.FLOAT32, task);
    }

    @Test
    void llamaWithLoraDropoutAndAccumulation() {
        // 2 layers x (q, v, down) x (A, B) = 12 tensors; LoRA dropout 0.1 draws masks in every block
        assertSameGradients("llama lora (dropout 0.1, accumulation 2)", TinyModels::llama,
                m -> lora(m, 0.1, false, "q_proj", "v_proj", "down_proj"), lmExamples(6, 3), 3, 2, 12);
    }

    @Test
    void gpt2WithModelDropout() {
        assertSameGradients("gpt2 lora (model dropouts 0.1)",
                () -> random("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":3,\"n_head\":4,\"vocab_size\":128,"
                        + "\"n_positions\":64,\"resid_pdrop\":0.1,\"embd_pdrop\":0.1,\"attn_pdrop\":0.1,"
                        + "\"initializer_range\":0.2}", null),
                m -> lora(m, 0.05, true, "c_attn", "c_fc"), lmExamples(4, 5), 4, 1, 12);
    }

    @Test
    void bertSequenceClassificationWithDropout() {
        // 2 layers x (query, value) x (A, B), and the classifier HF PEFT makes trainable for SEQ_CLS (modules_to_save)
        assertSameGradients("bert seq-cls lora (dropouts 0.1)",
                () -> random("{\"model_type\":\"bert\",\"hidden_size\":64,\"intermediate_size\":128,"
                        + "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":128,\"max_position_embeddings\":64,"
                        + "\"type_vocab_size\":2,\"num_labels\":3,\"hidden_dropout_prob\":0.1,"
                        + "\"attention_probs_dropout_prob\":0.1,\"initializer_range\":0.2}", TaskType.SEQ_CLS),
                m -> lora(m, 0.1, false, "query", "value"), classified(6, 9), 3, 1, 10);
    }

    @Test
    void mistralAndQwen2FixtureBases() {
        for (String name : List.of("mistral_lora", "qwen2_lora")) {
            Path base = Fixtures.dir(name).resolve("base");
            assertSameGradients(name.replace("_lora", "") + " lora", () -> Models.load(base, Device.cpu(), DataType.FLOAT32, null),
                    m -> lora(m, 0.1, false, "q_proj", "k_proj", "v_proj", "o_proj"), lmExamples(4, 13), 2, 1,
                    8 * m(base));
        }
    }

    private static int m(Path base) {
        return HfConfig.read(base).integer("num_hidden_layers");
    }

    @Test
    void qloraOnAnNf4Base() {
        Path base = PeftTrainerTest.PARITY.resolve("base");
        Supplier<TransformerModel> nf4 = () -> {
            TransformerModel model = Models.load(base, HfConfig.read(base), Device.cpu(), DataType.FLOAT32, null, null,
                    Quantization.nf4());
            assertInstanceOf(Linear4bit.class, model.resolve("model.layers.0.mlp.up_proj"));
            return model;
        };
        assertSameGradients("qlora nf4+dq llama", nf4, m -> {
            PeftModel p = lora(m, 0.1, false, "q_proj", "v_proj", "up_proj");
            assertInstanceOf(Linear4bit.class, ((LoraLayer) m.resolve("model.layers.0.self_attn.q_proj")).baseModule());
            return p;
        }, lmExamples(4, 17), 2, 1, 6 * m(base));
    }

    /**
     * Without checkpointing a 4-bit base's products are recorded through a {@code RecomputeTape} (their input
     * gradients recomputed in backward, no dense weight kept): the gradients equal those of the same model with every
     * 4-bit layer replaced by its dequantised dense weight (plain autograd). LoRA sits on projections whose inputs are
     * a norm (q_proj), the attention output (o_proj) and the activation product (down_proj); k, v, gate and up stay
     * bare 4-bit layers; with LoRA dropout and gradient accumulation.
     */
    @Test
    void qloraRecomputedGradientsEqualTheDequantisedDenseModel() {
        Path base = PeftTrainerTest.PARITY.resolve("base");
        Supplier<TransformerModel> nf4 = () -> Models.load(base, HfConfig.read(base), Device.cpu(), DataType.FLOAT32,
                null, null, Quantization.nf4());
        Supplier<TransformerModel> dense = () -> {
            TransformerModel m = nf4.get();
            assertEquals(7 * m(base), Quantization.dequantize(m));
            return m;
        };
        Function<TransformerModel, PeftModel> adapt = m -> lora(m, 0.1, false, "q_proj", "o_proj", "down_proj");
        assertClose("qlora (tape) vs dequantised dense", gradients(nf4, adapt, lmExamples(6, 19), 3, 2, false),
                gradients(dense, adapt, lmExamples(6, 19), 3, 2, false), 6 * m(base), 1e-5);
    }

    /** BERT (post-LN): its q, k, v read the block's input itself, the leaf the tape backpropagates into directly. */
    @Test
    void qloraOnBertRecomputedGradientsEqualTheDenseModel(@org.junit.jupiter.api.io.TempDir Path tmp) {
        try (TransformerModel m = random("{\"model_type\":\"bert\",\"hidden_size\":64,\"intermediate_size\":128,"
                + "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":128,\"max_position_embeddings\":64,"
                + "\"type_vocab_size\":2,\"num_labels\":3,\"hidden_dropout_prob\":0.1,"
                + "\"attention_probs_dropout_prob\":0.1,\"initializer_range\":0.2}", TaskType.SEQ_CLS)) {
            m.save(tmp);
        }
        Supplier<TransformerModel> nf4 = () -> Models.load(tmp, HfConfig.read(tmp), Device.cpu(), DataType.FLOAT32,
                TaskType.SEQ_CLS, null, Quantization.nf4().withSkipModules(List.of("classifier")));
        Supplier<TransformerModel> dense = () -> {
            TransformerModel m = nf4.get();
            assertTrue(Quantization.dequantize(m) > 0);
            return m;
        };
        Function<TransformerModel, PeftModel> adapt = m -> lora(m, 0.1, false, "query", "value", "output.dense");
        assertClose("bert qlora (tape) vs dense", gradients(nf4, adapt, classified(6, 29), 3, 1, false),
                gradients(dense, adapt, classified(6, 29), 3, 1, false), 18, 1e-5);
    }

    /**
     * A mixture of LoRA experts on a 4-bit base: its router balance term (an extra loss read from inside the blocks)
     * and the tape's per-block backward give the dense model's gradients.
     */
    @Test
    void moeLoraWithItsBalanceTermOnA4bitBase() {
        Path base = PeftTrainerTest.PARITY.resolve("base");
        Supplier<TransformerModel> nf4 = () -> Models.load(base, HfConfig.read(base), Device.cpu(), DataType.FLOAT32,
                null, null, Quantization.nf4());
        Supplier<TransformerModel> dense = () -> {
            TransformerModel m = nf4.get();
            Quantization.dequantize(m);
            return m;
        };
        Function<TransformerModel, PeftModel> adapt = m -> {
            PeftModel peft = PeftModel.wrap(m);
            Engine.getInstance().setRandomSeed(11);
            peft.addAdapter("default", new io.github.peft4j.lora.moe.MoeLoraConfig().numExperts(3).topK(2).r(2)
                    .loraAlpha(4).routerAuxLossCoef(0.5).initLoraWeights(false).targetModules("v_proj", "up_proj"));
            return peft;
        };
        assertClose("moe-lora on nf4 (tape) vs dense", gradients(nf4, adapt, lmExamples(4, 23), 2, 1, false),
                gradients(dense, adapt, lmExamples(4, 23), 2, 1, false), 6 * m(base), 1e-5);
    }

    /**
     * Asserts two gradient maps agree (max|diff| within {@code rel} times the largest |gradient|; every tensor
     * non-zero); returns max|diff|.
     */
    static double assertClose(String what, Map<String, float[]> a, Map<String, float[]> b, int expectedTensors, double rel) {
        assertEquals(a.keySet(), b.keySet(), what);
        assertEquals(expectedTensors, a.size(), what + ": tensors with a gradient " + a.keySet());
        double worst = 0;
        double largest = 0;
        for (String k : a.keySet()) {
            float[] x = a.get(k);
            float[] y = b.get(k);
            double norm = 0;
            for (int i = 0; i < x.length; i++) {
                worst = Math.max(worst, Math.abs(x[i] - y[i]));
                norm = Math.max(norm, Math.abs(x[i]));
            }
            assertTrue(norm > 0, what + ": zero gradient for " + k);
            largest = Math.max(largest, norm);
        }
        System.out.printf("%s: max|diff| = %.2e, max|grad| = %.2e%n", what, worst, largest);
        assertTrue(worst <= rel * largest, what + ": max|diff| " + worst + " > " + rel + " * " + largest);
        return worst;
    }

    /** AdamW, warmup + cosine, clipping, LoRA dropout, accumulation 2, 6 steps: the same losses and final weights. */
    @Test
    void shortTrainingRunGivesTheSameLosses() {
        List<Example> data = lmExamples(12, 21);
        List<List<Double>> losses = new ArrayList<>();
        List<Map<String, float[]>> weights = new ArrayList<>();
        for (boolean ckpt : new boolean[] {false, true}) {
            try (TransformerModel model = TinyModels.llama()) {
                PeftModel peft = lora(model, 0.1, false, "q_proj", "v_proj", "gate_proj");
                try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(5e-3)
                        .optScheduler(LrSchedule.Kind.COSINE).optWarmupSteps(2).optMaxSteps(6).optBatchSize(2)
                        .optGradientAccumulation(2).optWeightDecay(0.01).optGradientCheckpointing(ckpt).build()) {
                    losses.add(t.train().losses());
                }
                Map<String, float[]> w = new TreeMap<>();
                peft.trainableParameters().forEach((k, p) -> w.put(k, p.array().toFloatArray()));
                weights.add(w);
            }
        }
        double worstLoss = 0;
        for (int i = 0; i < 6; i++) {
            worstLoss = Math.max(worstLoss, Math.abs(losses.get(0).get(i) - losses.get(1).get(i)));
        }
        double worstWeight = 0;
        for (String k : weights.get(0).keySet()) {
            float[] a = weights.get(0).get(k);
            float[] b = weights.get(1).get(k);
            for (int i = 0; i < a.length; i++) {
                worstWeight = Math.max(worstWeight, Math.abs(a[i] - b[i]));
            }
        }
        System.out.printf("gradient checkpointing 6 AdamW steps: losses %s vs %s, max|loss diff| = %.2e, "
                + "max|weight diff| = %.2e%n", losses.get(0), losses.get(1), worstLoss, worstWeight);
        assertEquals(6, losses.get(1).size());
        assertTrue(losses.get(0).get(5) < losses.get(0).get(0), "loss decreases: " + losses.get(0));
        assertTrue(worstLoss <= 1e-6, "losses differ by " + worstLoss);
        assertTrue(worstWeight <= 1e-6, "weights differ by " + worstWeight);
    }
}
