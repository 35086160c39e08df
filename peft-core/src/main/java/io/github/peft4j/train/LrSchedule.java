package io.github.peft4j.train;

import java.util.Locale;

/**
 * A learning-rate schedule with linear warmup, with the multipliers of transformers'
 * {@code get_constant_schedule_with_warmup}, {@code get_linear_schedule_with_warmup} and
 * {@code get_cosine_schedule_with_warmup} (half a cosine cycle). The rate used for optimizer step {@code s}
 * (0-based) is {@code peak * factor(s)}; during warmup {@code factor(s) = s / warmup}, so the very first step
 * has rate 0 when there is warmup, as in transformers.
 *
 * @param kind the decay after warmup
 * @param peak the peak learning rate
 * @param warmupSteps the number of warmup steps (0 for none)
 * @param totalSteps the total number of optimizer steps (the decay reaches 0 there)
 */
public record LrSchedule(Kind kind, double peak, long warmupSteps, long totalSteps) {

    /** The decay after warmup. */
    public enum Kind {
        /** Constant at the peak. */
        CONSTANT,
        /** Linear from the peak to 0 at the last step. */
        LINEAR,
        /** Half a cosine from the peak to 0 at the last step. */
        COSINE;

        /**
         * Parses a CLI name.
         *
         * @param name {@code constant}, {@code linear} or {@code cosine} (case-insensitive)
         * @return the kind
         * @throws IllegalArgumentException naming the accepted values
         */
        public static Kind parse(String name) {
            try {
                return valueOf(name.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("scheduler '" + name + "': expected constant, linear or cosine", e);
            }
        }
    }

    /** Checks the arguments. */
    public LrSchedule {
        if (kind == null) {
            throw new IllegalArgumentException("schedule kind is null");
        }
        if (!(peak >= 0) || Double.isInfinite(peak)) {
            throw new IllegalArgumentException("learning rate must be finite and >= 0, got " + peak);
        }
        if (warmupSteps < 0 || totalSteps < 0) {
            throw new IllegalArgumentException("warmup (" + warmupSteps + ") and total steps (" + totalSteps
                    + ") must be >= 0");
        }
    }

    /**
     * The multiplier of the peak rate at a step.
     *
     * @param step the 0-based optimizer step
     * @return the factor in [0, 1]
     */
    public double factor(long step) {
        if (step < warmupSteps) {
            return (double) step / Math.max(1, warmupSteps);
        }
        switch (kind) {
            case CONSTANT:
                return 1.0;
            case LINEAR:
                return Math.max(0.0, (double) (totalSteps - step) / Math.max(1, totalSteps - warmupSteps));
            case COSINE:
            default:
                double progress = (double) (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
                return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * progress)));
        }
    }

    /**
     * The learning rate at a step.
     *
     * @param step the 0-based optimizer step
     * @return {@code peak * factor(step)}
     */
    public double rate(long step) {
        return peak * factor(step);
    }
}
