package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.github.peft4j.adapters.BitFitConfig;
import io.github.peft4j.adapters.IA3Config;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * IA3 and BitFit train in fp16 on the CPU: their parameters are fp32 leaves (IA3's vectors are created in fp32;
 * BitFit turns the selected fp16 biases into fp32 leaves and back on removal), cast to fp16 in forward. Three SGD
 * steps on a tiny GPT-2 track the fp32 losses.
 */
class Fp16AdaptersTrainingTest {
    private static final double RTOL = 1e-2;

    private static List<Example> data() {
        Random r = new Random(5);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[6 + r.nextInt(5)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            out.add(Example.tokens(ids));
        }
        return out;
    }

    /** Losses of 3 SGD steps (lr 0.5); checks that every trainable parameter is fp32 and moved. */
    private static List<Double> train(DataType dtype, Supplier<PeftConfig> config) {
        try (TransformerModel model = TinyModels.gpt2(dtype); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config.get());
            Map<String, float[]> before = new TreeMap<>();
            peft.trainableParameters().forEach((k, p) -> before.put(k, p.array().toFloatArray()));
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data()).optOptimizer(sgd)
                    .optLearningRate(0.5).optMaxSteps(3).optBatchSize(4).optShuffle(false).build()) {
                losses = t.train().losses();
                assertEquals(0, t.scaler().skippedSteps());
            }
            for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
                assertEquals(DataType.FLOAT32, e.getValue().array().getDataType(), e.getKey());
                float[] now = e.getValue().array().toFloatArray();
                double moved = 0;
                for (int i = 0; i < now.length; i++) {
                    moved = Math.max(moved, Math.abs(now[i] - before.get(e.getKey())[i]));
                }
                assertTrue(moved > 0, dtype + ": " + e.getKey() + " did not move");
            }
            if (dtype == DataType.FLOAT16) {
                peft.deleteAdapter("default");
                model.parameters().forEach((k, p) -> assertEquals(DataType.FLOAT16, p.array().getDataType(),
                        "after removal " + k));
            }
            return losses;
        }
    }

    private static void tracks(String what, Supplier<PeftConfig> config) {
        List<Double> fp32 = train(DataType.FLOAT32, config);
        List<Double> fp16 = train(DataType.FLOAT16, config);
        double worst = 0;
        for (int i = 0; i < 3; i++) {
            worst = Math.max(worst, Math.abs(fp16.get(i) - fp32.get(i)) / fp32.get(i));
        }
        assertTrue(worst < RTOL, what + ": fp16 " + fp16 + " vs fp32 " + fp32);
        assertTrue(fp16.get(2) < fp16.get(0), what + " fp16 loss did not fall: " + fp16);
        System.out.printf("fp16 vs fp32 %s, 3 SGD steps: fp32 %s fp16 %s max rel diff %.2e%n", what, fp32, fp16, worst);
    }

    @Test
    void ia3TrainsInFp16() {
        tracks("IA3", () -> new IA3Config().targetModules("c_attn", "mlp.c_proj").feedforwardModules("mlp.c_proj").fanInFanOut(true));
    }

    @Test
    void bitFitTrainsInFp16AndGivesTheModelItsDtypeBack() {
        tracks("BitFit", BitFitConfig::new);
    }

    @Test
    void anFp32Ia3VectorMergesIntoFp16Weights() {
        try (TransformerModel model = TinyModels.gpt2(DataType.FLOAT16)) {
            PeftModel peft = PeftModel.wrap(model);
            ai.djl.engine.Engine.getInstance().setRandomSeed(3);
            peft.addAdapter("default", new IA3Config().targetModules("c_attn", "mlp.c_proj").feedforwardModules("mlp.c_proj")
                    .fanInFanOut(true).initIa3Weights(false));
            peft.trainableParameters().values().forEach(p -> assertEquals(DataType.FLOAT32, p.array().getDataType()));
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                ai.djl.ndarray.NDArray ids = TinyModels.ids(model.manager(), 2, 7, 1);
                float[] live = peft.forward(io.github.peft4j.model.ModelInput.of(ids, null)).logits()
                        .toType(DataType.FLOAT32, false).toFloatArray();
                peft.merge("default");
                float[] merged = peft.forward(io.github.peft4j.model.ModelInput.of(ids, null)).logits()
                        .toType(DataType.FLOAT32, false).toFloatArray();
                double worst = 0;
                double scale = 0;
                for (int i = 0; i < live.length; i++) {
                    worst = Math.max(worst, Math.abs(live[i] - merged[i]));
                    scale = Math.max(scale, Math.abs(live[i]));
                }
                assertTrue(worst < 1e-2 * scale, "merged vs unmerged fp16 logits: max|diff| " + worst + " of " + scale);
                System.out.printf("IA3 fp32 vectors merged into fp16 weights: logits max|diff| %.2e (max|logit| %.2f)%n",
                        worst, scale);
                model.parameters().forEach((k, p) -> {
                    if (!k.contains("ia3_l")) {
                        assertEquals(DataType.FLOAT16, p.array().getDataType(), k);
                    }
                });
            }
        }
    }
}
