package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PrefixTuningConfig;
import io.github.peft4j.prompt.PromptTuningConfig;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Prompt and prefix tuning train in fp16 on the CPU: their fp32 parameters are cast to fp16 differentiably (the
 * prompt embeddings or the key/value prefix). Three SGD steps on a tiny Llama track the fp32 losses.
 */
class Fp16PromptTrainingTest {
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
        try (TransformerModel model = TinyModels.llama(dtype); Sgd sgd = Sgd.builder().build()) {
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
    void promptTuningTrainsInFp16() {
        tracks("prompt tuning", () -> new PromptTuningConfig().numVirtualTokens(4));
    }

    @Test
    void prefixTuningWithProjectionTrainsInFp16() {
        tracks("prefix tuning", () -> new PrefixTuningConfig().numVirtualTokens(3).prefixProjection(true).encoderHiddenSize(16));
    }
}
