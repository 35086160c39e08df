package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * fp16 training on the CPU with LoRA on a tiny Llama: fp16 compute, frozen fp16 base weights, fp32 LoRA leaves cast
 * in forward, dynamic loss scaling. It must track the fp32 run, move the weights, skip an overflowing step and
 * resume exactly.
 */
class Fp16TrainingTest {
    /** Largest |fp16 - fp32| / fp32 loss over the 5 steps measured: about 1e-3; the bound leaves room. */
    static final double LOSS_RTOL = 1e-2;

    private record Run(List<Double> losses, Map<String, float[]> before, Map<String, float[]> after, long skipped,
            double scale) {}

    private static Map<String, float[]> weights(PeftModel peft) {
        Map<String, float[]> out = new TreeMap<>();
        peft.trainableParameters().forEach((k, p) -> out.put(k, p.array().toFloatArray()));
        return out;
    }

    /** 5 SGD steps (lr 0.5, clip 1.0) on 8 random examples in batches of 4, in the given dtype. */
    private static Run sgd(DataType dtype, LossScaler scaler, int steps) {
        List<Example> data = PeftTrainerTest.randomExamples(8, 21);
        try (TransformerModel model = TinyModels.llama(dtype); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0);
            Map<String, float[]> before = weights(peft);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd).optLearningRate(0.5)
                    .optMaxSteps(steps).optBatchSize(4).optShuffle(false).optLossScaler(scaler).build()) {
                List<Double> losses = t.train().losses();
                return new Run(losses, before, weights(peft), t.scaler().skippedSteps(), t.scaler().scale());
            }
        }
    }

    private static double maxAbs(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    @Test
    void fiveFp16SgdStepsOnTheCpuTrackFp32() {
        Run fp32 = sgd(DataType.FLOAT32, null, 5);
        Run fp16 = sgd(DataType.FLOAT16, null, 5);
        assertEquals(0, fp16.skipped(), "no overflow at the default scale 2^16 on this model");
        assertEquals(LossScaler.INIT_SCALE, fp16.scale(), 0);
        double worst = 0;
        for (int i = 0; i < 5; i++) {
            double rel = Math.abs(fp16.losses().get(i) - fp32.losses().get(i)) / Math.abs(fp32.losses().get(i));
            worst = Math.max(worst, rel);
            assertTrue(rel < LOSS_RTOL, "step " + (i + 1) + ": fp16 " + fp16.losses() + " vs fp32 " + fp32.losses());
        }
        assertTrue(fp32.losses().get(4) < fp32.losses().get(0) && fp16.losses().get(4) < fp16.losses().get(0),
                fp32.losses() + " / " + fp16.losses());
        double moved = 0;
        double apart = 0;
        for (String k : fp16.after().keySet()) {
            moved = Math.max(moved, maxAbs(fp16.before().get(k), fp16.after().get(k)));
            apart = Math.max(apart, maxAbs(fp32.after().get(k), fp16.after().get(k)));
            assertArrayEquals(fp32.before().get(k), fp16.before().get(k), 0f, "same initial fp32 LoRA weights " + k);
        }
        assertTrue(moved > 1e-2, "fp16 training moved the LoRA weights by at most " + moved);
        assertTrue(apart < 0.1 * moved, "fp16 vs fp32 weights after 5 steps differ by " + apart + " (moved " + moved + ")");
        System.out.printf("fp16 vs fp32, 5 SGD steps on the CPU: fp32 losses %s fp16 losses %s max rel diff %.2e "
                + "(bound %.0e); weights moved %.3e, fp16-fp32 max|diff| %.2e%n", fp32.losses(), fp16.losses(), worst,
                LOSS_RTOL, moved, apart);
    }

    /**
     * 3 SGD steps of LoRA on a tiny BERT classifier, whose head trains as a modules_to_save copy. At the default
     * scale 2^16 this model's first fp16 step overflows (skipped and the scale halved, as GradScaler does), which
     * would put the runs a step apart; fp16 starts at 2^10 instead, and no step may be skipped.
     */
    private static List<Double> classifier(DataType dtype) {
        List<Example> data = new ArrayList<>();
        java.util.Random r = new java.util.Random(2);
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[4 + r.nextInt(5)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            data.add(Example.classified(ids, i % 3));
        }
        try (TransformerModel model = TinyModels.bert(io.github.peft4j.model.TaskType.SEQ_CLS, dtype);
                Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(11);
            peft.addAdapter("default", new io.github.peft4j.lora.LoraConfig().r(2).initLoraWeights(false)
                    .targetModules("query", "value"));
            Map<String, float[]> before = weights(peft);
            assertTrue(before.keySet().stream().anyMatch(k -> k.contains("modules_to_save")), before.keySet().toString());
            List<Double> losses;
            LossScaler scaler = dtype == DataType.FLOAT16 ? new LossScaler(true, 1024, 2, 0.5, 2000) : null;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd).optLearningRate(0.5)
                    .optMaxSteps(3).optBatchSize(4).optShuffle(false).optLossScaler(scaler).build()) {
                losses = t.train().losses();
                assertEquals(0, t.scaler().skippedSteps());
            }
            Map<String, float[]> after = weights(peft);
            for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
                assertEquals(DataType.FLOAT32, e.getValue().array().getDataType(), e.getKey());
                assertTrue(maxAbs(before.get(e.getKey()), after.get(e.getKey())) > 0, dtype + ": " + e.getKey() + " did not move");
            }
            return losses;
        }
    }

    @Test
    void loraWithAClassifierCopyTrainsInFp16() {
        List<Double> fp32 = classifier(DataType.FLOAT32);
        List<Double> fp16 = classifier(DataType.FLOAT16);
        double worst = 0;
        for (int i = 0; i < 3; i++) {
            worst = Math.max(worst, Math.abs(fp16.get(i) - fp32.get(i)) / fp32.get(i));
        }
        assertTrue(worst < LOSS_RTOL, "fp16 " + fp16 + " vs fp32 " + fp32);
        System.out.printf("fp16 vs fp32 LoRA + modules_to_save classifier (BERT), 3 SGD steps: fp32 %s fp16 %s max rel "
                + "diff %.2e%n", fp32, fp16, worst);
    }

    @Test
    void everyFp32LeafGetsAGradientThroughTheFp16Forward() {
        try (TransformerModel model = TinyModels.llama(DataType.FLOAT16)) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0);
            assertEquals(DataType.FLOAT16, model.parameters().get("model.layers.0.self_attn.q_proj.base_layer.weight")
                    .array().getDataType(), "frozen base weights stay fp16");
            try (NDScope scope = new NDScope()) {
                Batch batch = new Collator().collate(model.manager(), PeftTrainerTest.randomExamples(3, 4));
                try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                    NDArray logits = peft.forward(batch.input()).logits();
                    assertEquals(DataType.FLOAT16, logits.getDataType());
                    gc.backward(Losses.causalLm(logits, batch.labels()));
                }
                for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
                    assertEquals(DataType.FLOAT32, e.getValue().array().getDataType(), e.getKey());
                    NDArray g = JniUtils.getGradient((PtNDArray) e.getValue().array());
                    assertNotNull(g, "no gradient reached " + e.getKey());
                    assertEquals(DataType.FLOAT32, g.getDataType());
                    assertTrue(g.abs().sum().getFloat() > 0, "zero gradient for " + e.getKey());
                }
            }
        }
    }

    @Test
    void aHugeLossScaleOverflowsSkipsTheStepAndLowersTheScale() {
        List<Boolean> skipped = new ArrayList<>();
        List<Example> data = PeftTrainerTest.randomExamples(8, 21);
        try (TransformerModel model = TinyModels.llama(DataType.FLOAT16); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0);
            Map<String, float[]> before = weights(peft);
            LossScaler huge = new LossScaler(true, 1e30, 2.0, 0.5, 2000);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd).optLearningRate(0.5)
                    .optMaxSteps(1).optBatchSize(4).optLossScaler(huge).optStepListener(s -> skipped.add(s.skipped()))
                    .build()) {
                t.train();
                assertEquals(List.of(true), skipped);
                assertEquals(1, t.scaler().skippedSteps());
                assertEquals(5e29, t.scaler().scale(), 1e15);
            }
            Map<String, float[]> after = weights(peft);
            for (String k : before.keySet()) {
                assertArrayEquals(before.get(k), after.get(k), 0f, "skipped step changed " + k);
            }
            for (Param p : peft.trainableParameters().values()) {
                NDArray g = JniUtils.getGradient((PtNDArray) p.array());
                assertTrue(g == null || g.abs().sum().getFloat() == 0, "gradients are zeroed after a skipped step");
            }
        }
    }

    @Test
    void fp16RunResumesExactly(@TempDir Path dir) {
        List<Example> data = PeftTrainerTest.randomExamples(10, 3);
        List<double[]> full = fp16Adamw(data, dir.resolve("full"), null, -1);
        List<double[]> first = fp16Adamw(data, dir.resolve("cut"), null, 2);
        TrainerState st = TrainerState.read(dir.resolve("cut/checkpoint-2"));
        assertEquals(full.get(1)[1], st.lossScale(), 0, "the checkpoint keeps the loss scale");
        List<double[]> rest = fp16Adamw(data, dir.resolve("cut"), dir.resolve("cut/checkpoint-2"), -1);
        List<double[]> joined = new ArrayList<>(first);
        joined.addAll(rest);
        assertEquals(4, full.size());
        assertEquals(4, joined.size());
        boolean anySkip = false;
        for (int i = 0; i < 4; i++) {
            assertArrayEquals(full.get(i), joined.get(i), 0, "step " + (i + 1) + ": (loss, scale, skipped)");
            anySkip |= full.get(i)[2] == 1;
        }
        // this run overflows once at 2^16 (dropout 0.1, AdamW): the resumed run repeats the skip and the lowered scale
        assertTrue(anySkip, "expected a skipped step in this fp16 run");
        assertFalse(full.get(0)[0] == full.get(3)[0]);
    }

    /** 4 AdamW steps in fp16 with LoRA dropout; per step (loss, loss scale after the step, 1 if skipped). */
    private static List<double[]> fp16Adamw(List<Example> data, Path out, Path resume, int stopAt) {
        List<double[]> steps = new ArrayList<>();
        try (TransformerModel model = TinyModels.llama(DataType.FLOAT16)) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0.1);
            PeftTrainer[] self = new PeftTrainer[1];
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(1e-2)
                    .optMaxSteps(4).optBatchSize(3).optSeed(9).optOutputDir(out).optCheckpointEvery(2).optResumeFrom(resume)
                    .optStepListener(s -> {
                        steps.add(new double[] {s.loss(), self[0].scaler().scale(), s.skipped() ? 1 : 0});
                        if (s.step() == stopAt) {
                            self[0].requestStop();
                        }
                    }).build()) {
                self[0] = t;
                t.train();
                return steps;
            }
        }
    }

    @Test
    void doraTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("DoRA", TinyModels::llama,
                () -> new LoraConfig().r(4).targetModules("q_proj", "v_proj").useDora(true).initLoraWeights(false));
    }

    @Test
    void loraOnEmbeddingsTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("LoRA on embed_tokens", TinyModels::llama,
                () -> new LoraConfig().r(4).targetModules("embed_tokens", "q_proj"));
    }
}
