package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** Learning rates against transformers' get_*_schedule_with_warmup (peak 0.01, warmup 3, total 10, steps 0..11). */
class LrScheduleTest {
    // printed by transformers 5.18: optimizer.param_groups[0]["lr"] before each optimizer.step(); scheduler.step()
    private static final double[] CONSTANT = {0.0, 0.003333333333333333, 0.006666666666666666, 0.01, 0.01, 0.01, 0.01,
        0.01, 0.01, 0.01, 0.01, 0.01};
    private static final double[] LINEAR = {0.0, 0.003333333333333333, 0.006666666666666666, 0.01, 0.008571428571428572,
        0.0071428571428571435, 0.005714285714285714, 0.004285714285714286, 0.002857142857142857, 0.0014285714285714286,
        0.0, 0.0};
    private static final double[] COSINE = {0.0, 0.003333333333333333, 0.006666666666666666, 0.01, 0.009504844339512096,
        0.008117449009293669, 0.006112604669781572, 0.003887395330218428, 0.0018825509907063327, 0.0004951556604879049,
        0.0, 0.0004951556604879043};

    @Test
    void ratesEqualTransformers() {
        check(LrSchedule.Kind.CONSTANT, CONSTANT);
        check(LrSchedule.Kind.LINEAR, LINEAR);
        check(LrSchedule.Kind.COSINE, COSINE);
    }

    private static void check(LrSchedule.Kind kind, double[] expected) {
        LrSchedule s = new LrSchedule(kind, 0.01, 3, 10);
        for (int step = 0; step < expected.length; step++) {
            assertEquals(expected[step], s.rate(step), 1e-15, kind + " step " + step);
        }
    }

    @Test
    void noWarmupStartsAtThePeakAndBadArgumentsAreNamed() {
        assertEquals(0.5, new LrSchedule(LrSchedule.Kind.LINEAR, 0.5, 0, 4).rate(0), 0);
        assertEquals(0.25, new LrSchedule(LrSchedule.Kind.LINEAR, 0.5, 0, 4).rate(2), 0);
        assertEquals(LrSchedule.Kind.COSINE, LrSchedule.Kind.parse("Cosine"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.Kind.parse("step"));
        assertEquals("scheduler 'step': expected constant, linear or cosine", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> new LrSchedule(LrSchedule.Kind.LINEAR, -1, 0, 4));
    }
}
