package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks.TrainingStep;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The trainer calls an adapter's {@link io.github.peft4j.peft.TrainingHooks} in HF's order: extra loss per
 * micro-batch, after-backward before clipping, after-step after the update and before the gradients are zeroed.
 * The adapter is the test-only {@link ProbeMethod}, which trains two RMSNorm weights of a tiny Llama.
 */
class TrainingHooksTest {
    @BeforeAll
    static void register() {
        io.github.peft4j.peft.PeftMethods.register(new ProbeMethod());
    }

    private static final String MASKED = ProbeMethod.SELECTED[0];

    static List<Example> data(int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[5 + r.nextInt(6)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            out.add(Example.tokens(ids));
        }
        return out;
    }

    /** What a run returns: losses, weights before and after. */
    private record Run(List<Double> losses, Map<String, float[]> before, Map<String, float[]> after) {}

    private static Map<String, float[]> weights(PeftModel peft) {
        Map<String, float[]> out = new TreeMap<>();
        peft.trainableParameters().forEach((k, p) -> out.put(k, p.array().toFloatArray()));
        return out;
    }

    /** SGD (lr 0.1, no weight decay) on the probe; {@code setup} sets its hooks; {@code trainer} its options. */
    private static Run run(int steps, int accumulation, double clip, LossScaler scaler, Consumer<ProbeMethod.Probe> setup) {
        try (TransformerModel model = TinyModels.llama(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            ProbeMethod.Probe probe = (ProbeMethod.Probe) peft.addAdapter("default", new ProbeMethod.ProbeConfig());
            setup.accept(probe);
            Map<String, float[]> before = weights(peft);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data(8, 3)).optOptimizer(sgd)
                    .optLearningRate(0.1).optMaxSteps(steps).optBatchSize(2).optGradientAccumulation(accumulation)
                    .optShuffle(false).optMaxGradNorm(clip).optLossScaler(scaler).build()) {
                List<Double> losses = t.train().losses();
                return new Run(losses, before, weights(peft));
            }
        }
    }

    private static NDArray grad(Param p) {
        return JniUtils.getGradient((PtNDArray) p.array());
    }

    @Test
    void anExtraLossChangesTheReportedLossByExactlyItsTermAndItsGradientFlows() {
        double lr = 0.1;
        Run plain = run(1, 2, 0, null, p -> {});
        int[] calls = {0};
        Run extra = run(1, 2, 0, null, p -> p.extra = step -> {
            calls[0]++;
            NDArray w = p.parameters().get(MASKED).array();
            return w.sum().mul(Ops.scalar(w, 0.25)); // 0.25 * sum(w): 16 at the initial ones, gradient 0.25 each
        });
        assertEquals(2, calls[0], "called once per micro-batch");
        // the two micro-batches' shares add up to 1, so the step's loss grows by exactly the term
        assertEquals(16.0, extra.losses().get(0) - plain.losses().get(0), 1e-5, plain.losses() + " vs " + extra.losses());
        float[] a = plain.after().get(MASKED);
        float[] b = extra.after().get(MASKED);
        for (int i = 0; i < a.length; i++) {
            assertEquals(-lr * 0.25, b[i] - a[i], 1e-6, "the extra term's gradient moved element " + i);
        }
        String other = ProbeMethod.SELECTED[1];
        assertArrayEquals(plain.after().get(other), extra.after().get(other), 1e-7f, "the term does not touch " + other);
        System.out.printf("hooks: extra loss 16 -> reported loss %.6f vs %.6f (diff %.2e from 16)%n", extra.losses().get(0),
                plain.losses().get(0), Math.abs(extra.losses().get(0) - plain.losses().get(0) - 16));
    }

    @Test
    void anAfterBackwardMaskZeroesExactlyTheMaskedGradientsAndThoseWeightsStay() {
        List<float[]> seen = new ArrayList<>();
        Run r = run(3, 1, 1.0, null, p -> {
            Param w = p.parameters().get(MASKED);
            p.afterBackward = step -> {
                try (NDScope s = new NDScope()) {
                    float[] mask = new float[(int) w.numel()];
                    for (int i = 0; i < mask.length; i++) {
                        mask[i] = i % 2;
                    }
                    grad(w).muli(Ops.owned(w.array().getManager(), mask, w.shape()));
                }
            };
            p.afterStep = step -> seen.add(grad(w).toFloatArray());
        });
        assertEquals(3, seen.size());
        for (float[] g : seen) {
            for (int i = 0; i < g.length; i++) {
                if (i % 2 == 0) {
                    assertEquals(0f, g[i], 0f, "masked gradient " + i);
                } else {
                    assertNotEquals(0f, g[i], "unmasked gradient " + i);
                }
            }
        }
        float[] before = r.before().get(MASKED);
        float[] after = r.after().get(MASKED);
        for (int i = 0; i < before.length; i++) {
            if (i % 2 == 0) {
                assertEquals(before[i], after[i], 0f, "masked weight " + i + " moved");
            } else {
                assertNotEquals(before[i], after[i], "unmasked weight " + i + " did not move");
            }
        }
    }

    @Test
    void hooksRunInHfOrderWithStepsOneToNAroundClippingAndTheUpdate() {
        List<String> log = new ArrayList<>();
        List<TrainingStep> steps = new ArrayList<>();
        double clip = 1e-4;
        List<double[]> normAndValue = new ArrayList<>();
        run(3, 2, clip, null, p -> {
            List<Param> ps = List.copyOf(p.parameters().values());
            p.extra = step -> {
                log.add("extra " + step.step());
                return null;
            };
            p.afterBackward = step -> {
                log.add("afterBackward " + step.step());
                normAndValue.add(new double[] {GradClip.norm(ps), ps.get(0).array().sum().getFloat()});
            };
            p.afterStep = step -> {
                log.add("afterStep " + step.step());
                steps.add(step);
                normAndValue.add(new double[] {GradClip.norm(ps), ps.get(0).array().sum().getFloat()});
            };
        });
        List<String> expected = new ArrayList<>();
        for (int s = 1; s <= 3; s++) {
            expected.addAll(List.of("extra " + s, "extra " + s, "afterBackward " + s, "afterStep " + s));
        }
        assertEquals(expected, log);
        assertEquals(List.of(new TrainingStep(1, 3), new TrainingStep(2, 3), new TrainingStep(3, 3)), steps);
        for (int s = 0; s < 3; s++) {
            double[] back = normAndValue.get(2 * s);
            double[] after = normAndValue.get(2 * s + 1);
            assertTrue(back[0] > 10 * clip, "after-backward sees unclipped gradients: " + back[0]);
            assertEquals(clip, after[0], clip * 1e-3, "after-step sees the clipped gradients (not yet zeroed)");
            assertNotEquals(back[1], after[1], "the update happens between the two hooks");
        }
    }

    @Test
    void anInfiniteExtraLossUnderLossScalingSkipsTheStepAndLowersTheScale() {
        List<Double> zeroGradAtStep1 = new ArrayList<>();
        List<float[]> weightsAtStep1 = new ArrayList<>();
        LossScaler scaler = new LossScaler(true, 1024, 2, 0.5, 2000);
        Run r = run(2, 1, 1.0, scaler, p -> {
            Param w = p.parameters().get(MASKED);
            p.extra = step -> step.step() == 1 ? w.array().sum().mul(Ops.scalar(w.array(), Double.POSITIVE_INFINITY)) : null;
            p.afterStep = step -> {
                if (step.step() == 1) {
                    zeroGradAtStep1.add((double) grad(w).abs().sum().getFloat());
                    weightsAtStep1.add(w.array().toFloatArray());
                }
            };
        });
        assertTrue(Double.isInfinite(r.losses().get(0)), r.losses().toString());
        assertTrue(Double.isFinite(r.losses().get(1)), r.losses().toString());
        assertEquals(List.of(0.0), zeroGradAtStep1, "after-step of a skipped step sees zeroed gradients");
        assertEquals(1, scaler.skippedSteps());
        assertEquals(512, scaler.scale(), 0);
        assertEquals(1, scaler.goodSteps());
        assertArrayEquals(r.before().get(MASKED), weightsAtStep1.get(0), 0f, "the skipped step left the weights");
        assertFalse(java.util.Arrays.equals(r.before().get(MASKED), r.after().get(MASKED)), "step 2 was taken");
    }
}
