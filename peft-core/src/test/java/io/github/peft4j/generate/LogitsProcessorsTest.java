package io.github.peft4j.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Processor numbers on hand-made scores. The expected values are what transformers 5.18's
 * RepetitionPenaltyLogitsProcessor, TopKLogitsWarper, TopPLogitsWarper and TemperatureLogitsWarper return for the
 * same inputs (checked once with /work/V/bin/python).
 */
class LogitsProcessorsTest {
    private static final float NEG = Float.NEGATIVE_INFINITY;

    private static float[] run(LogitsProcessor p, long[] ids, float[] scores) {
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray i = m.create(ids, new Shape(1, ids.length));
            NDArray s = m.create(scores, new Shape(1, scores.length));
            return p.process(i, s).toFloatArray();
        }
    }

    @Test
    void repetitionPenaltyDividesPositiveAndMultipliesNegativeOncePerToken() {
        assertArrayEquals(new float[] {0.5f, -4f, 3f, 0.5f},
                run(LogitsProcessors.repetitionPenalty(2.0), new long[] {0, 1, 1}, new float[] {1f, -2f, 3f, 0.5f}));
    }

    @Test
    void topKKeepsTies() {
        float[] s = {1f, 3f, 2f, 3f};
        assertArrayEquals(new float[] {NEG, 3f, NEG, 3f}, run(LogitsProcessors.topK(2), new long[] {0}, s));
        assertArrayEquals(new float[] {NEG, 3f, 2f, 3f}, run(LogitsProcessors.topK(3), new long[] {0}, s));
        assertArrayEquals(s, run(LogitsProcessors.topK(10), new long[] {0}, s));
    }

    @Test
    void topPKeepsTheSmallestNucleus() {
        float[] s = {(float) Math.log(0.5), (float) Math.log(0.3), (float) Math.log(0.15), (float) Math.log(0.05)};
        assertArrayEquals(new float[] {s[0], s[1], NEG, NEG}, run(LogitsProcessors.topP(0.75), new long[] {0}, s));
        assertArrayEquals(new float[] {s[0], NEG, NEG, NEG}, run(LogitsProcessors.topP(0.3), new long[] {0}, s));
        assertArrayEquals(s, run(LogitsProcessors.topP(1.0), new long[] {0}, s));
    }

    @Test
    void temperatureDivides() {
        assertArrayEquals(new float[] {1f, 2f}, run(LogitsProcessors.temperature(2.0), new long[] {0}, new float[] {2f, 4f}));
    }

    @Test
    void chainFollowsHfOrderAndSkipsWarpersWhenGreedy() {
        LogitsProcessor mine = (i, s) -> s;
        GenerationConfig sample = GenerationConfig.builder().doSample(true).temperature(0.5).topK(3).topP(0.9)
                .repetitionPenalty(1.2).build();
        List<LogitsProcessor> c = LogitsProcessors.chain(sample, List.of(mine));
        assertEquals(5, c.size());
        assertEquals(mine, c.get(1));
        assertEquals(2, LogitsProcessors.chain(sample.toBuilder().greedy().build(), List.of(mine)).size());
        // temperature before top-k before top-p: 0.5 doubles [1,3,2,3] -> top-k(3) keeps 2,3,3 ...
        float[] out = run((i, s) -> {
            NDArray x = s;
            for (LogitsProcessor p : LogitsProcessors.chain(sample.toBuilder().repetitionPenalty(1).build(), List.of())) {
                x = p.process(i, x);
            }
            return x;
        }, new long[] {0}, new float[] {1f, 3f, 2f, 3f});
        // [2,6,4,6] -> top-3 [-inf,6,4,6] -> probs of 4 is e^-2/(2+e^-2)=0.0634 <= 0.1 -> removed
        assertArrayEquals(new float[] {NEG, 6f, NEG, 6f}, out);
    }
}
