package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Optimizer;
import io.github.peft4j.train.PeftTrainer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Gradient checkpointing with input-side methods: prompt tuning's virtual tokens (their gradient reaches the layers
 * before the blocks through the first block's input) and prefix tuning with a projection (one encoder output split
 * into every layer's key/value prefix, so every recomputed block backpropagates into the same graph) get the plain
 * step's gradients, on Llama, GPT-2 and BERT.
 */
class PromptCheckpointingTest {
    /** Records every trainable gradient; updates nothing. */
    private static final class Capture implements Optimizer {
        final Map<String, float[]> grads = new TreeMap<>();

        @Override
        public void update(Map<String, Param> params, double lr) {
            params.forEach((k, p) -> {
                NDArray g = JniUtils.getGradient((PtNDArray) p.array());
                if (g != null) {
                    grads.put(k, g.toFloatArray());
                    g.close();
                }
            });
        }

        @Override
        public Map<String, NDArray> state() {
            return Map.of();
        }

        @Override
        public void loadState(Map<String, NDArray> state) {}

        @Override
        public long steps() {
            return 0;
        }

        @Override
        public void close() {}
    }

    private static Map<String, float[]> step(Supplier<TransformerModel> base, PeftConfig config, boolean cls,
            boolean checkpoint) {
        Random r = new Random(3);
        List<Example> data = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            int[] ids = new int[5 + i];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            data.add(cls ? Example.classified(ids, i % 3) : Example.tokens(ids));
        }
        try (TransformerModel model = base.get(); Capture capture = new Capture()) {
            PeftModel peft = PeftModel.wrap(model);
            ai.djl.engine.Engine.getInstance().setRandomSeed(5);
            peft.addAdapter("default", config);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(capture)
                    .optMaxSteps(1).optBatchSize(4).optShuffle(false).optMaxGradNorm(0).optGradientCheckpointing(checkpoint)
                    .build()) {
                t.train();
            }
            return capture.grads;
        }
    }

    private static void same(String what, Supplier<TransformerModel> base, Supplier<PeftConfig> config, boolean cls) {
        Map<String, float[]> plain = step(base, config.get(), cls, false);
        Map<String, float[]> ckpt = step(base, config.get(), cls, true);
        assertEquals(plain.keySet(), ckpt.keySet(), what);
        assertTrue(!plain.isEmpty(), what);
        double worst = 0;
        for (String k : plain.keySet()) {
            float[] a = plain.get(k);
            float[] b = ckpt.get(k);
            double norm = 0;
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
                norm = Math.max(norm, Math.abs(a[i]));
            }
            assertTrue(norm > 0, what + ": zero gradient for " + k);
        }
        System.out.printf("gradient checkpointing %s: %d tensors %s, max|diff| = %.2e%n", what, plain.size(),
                plain.keySet(), worst);
        assertTrue(worst <= 1e-6, what + ": max|diff| " + worst);
    }

    @Test
    void promptAndPrefixTuningGetThePlainGradients() {
        same("llama prompt tuning", TinyModels::llama,
                () -> new PromptTuningConfig().numVirtualTokens(3).taskType(TaskType.CAUSAL_LM), false);
        same("gpt2 prefix tuning (projection)", TinyModels::gpt2,
                () -> new PrefixTuningConfig().prefixProjection(true).encoderHiddenSize(16).numVirtualTokens(3)
                        .taskType(TaskType.CAUSAL_LM), false);
        same("llama prefix tuning", TinyModels::llama,
                () -> new PrefixTuningConfig().numVirtualTokens(2).taskType(TaskType.CAUSAL_LM), false);
        same("bert prefix tuning (projection)", () -> TinyModels.bert(TaskType.SEQ_CLS),
                () -> new PrefixTuningConfig().prefixProjection(true).encoderHiddenSize(16).numVirtualTokens(2)
                        .taskType(TaskType.SEQ_CLS), true);
    }
}
