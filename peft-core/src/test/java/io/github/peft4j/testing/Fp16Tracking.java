package io.github.peft4j.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Function;
import java.util.function.Supplier;

/** The fp16-on-CPU training check every method runs: fp16 losses track fp32, trainable leaves stay fp32. */
public final class Fp16Tracking {
    private Fp16Tracking() {}

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
    private static List<Double> train(DataType dtype, Function<DataType, TransformerModel> tiny, Supplier<PeftConfig> config) {
        try (TransformerModel model = tiny.apply(dtype); Sgd sgd = Sgd.builder().build()) {
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

    /**
     * Trains a new adapter for 3 SGD steps (lr 0.5, batch 4) on a tiny model in fp32 and in fp16 (on the CPU) and
     * checks that the fp16 losses track the fp32 ones within 1e-2 relative and fall, that every trainable parameter
     * is an fp32 leaf that moved, and that removing the adapter gives the fp16 model its dtype back everywhere.
     *
     * @param what the method, for messages
     * @param tiny a tiny model in a dtype (e.g. {@code TinyModels::gpt2})
     * @param config a new config for each run
     */
    public static void tracks(String what, Function<DataType, TransformerModel> tiny, Supplier<PeftConfig> config) {
        List<Double> fp32 = train(DataType.FLOAT32, tiny, config);
        List<Double> fp16 = train(DataType.FLOAT16, tiny, config);
        double worst = 0;
        for (int i = 0; i < 3; i++) {
            worst = Math.max(worst, Math.abs(fp16.get(i) - fp32.get(i)) / fp32.get(i));
        }
        assertTrue(worst < RTOL, what + ": fp16 " + fp16 + " vs fp32 " + fp32);
        assertTrue(fp16.get(2) < fp16.get(0), what + " fp16 loss did not fall: " + fp16);
        System.out.printf("fp16 vs fp32 %s, 3 SGD steps: fp32 %s fp16 %s max rel diff %.2e%n", what, fp32, fp16, worst);
    }
}
