package io.github.peft4j.train;

import io.github.peft4j.nn.Param;
import java.util.Collection;

/**
 * Dynamic loss scaling for fp16 training, with the policy of {@code torch.amp.GradScaler}: the loss is
 * multiplied by {@link #scale()} before backward; the gradients are divided by it again before clipping;
 * a step whose gradients hold an inf or NaN is skipped and the scale multiplied by the backoff factor
 * (0.5); after {@code growthInterval} (2000) good steps in a row the scale is multiplied by the growth factor (2).
 *
 * <p>The bookkeeping ({@link #update(boolean)}) is pure Java so it can be tested without a GPU. A disabled
 * scaler (fp32 training) has scale 1 and never skips.
 */
public final class LossScaler {
    /** The initial scale, 2^16. */
    public static final double INIT_SCALE = 65536.0;

    private final boolean enabled;
    private final double growthFactor;
    private final double backoffFactor;
    private final int growthInterval;
    private double scale;
    private int goodSteps;
    private long skipped;

    /**
     * Creates a scaler with torch's defaults (2^16, growth 2 every 2000 good steps, backoff 0.5).
     *
     * @param enabled false for fp32 training (a no-op scaler)
     */
    public LossScaler(boolean enabled) {
        this(enabled, INIT_SCALE, 2.0, 0.5, 2000);
    }

    /**
     * Creates a scaler.
     *
     * @param enabled false for a no-op scaler
     * @param initScale the initial scale (positive)
     * @param growthFactor the factor after {@code growthInterval} good steps (&gt; 1)
     * @param backoffFactor the factor after an overflow (in (0, 1))
     * @param growthInterval good steps between growths (positive)
     */
    public LossScaler(boolean enabled, double initScale, double growthFactor, double backoffFactor, int growthInterval) {
        if (!(initScale > 0) || !(growthFactor > 1) || !(backoffFactor > 0 && backoffFactor < 1) || growthInterval < 1) {
            throw new IllegalArgumentException("loss scaler: need initScale > 0, growth > 1, 0 < backoff < 1, interval >= 1; got "
                    + initScale + ", " + growthFactor + ", " + backoffFactor + ", " + growthInterval);
        }
        this.enabled = enabled;
        this.growthFactor = growthFactor;
        this.backoffFactor = backoffFactor;
        this.growthInterval = growthInterval;
        this.scale = enabled ? initScale : 1.0;
    }

    /** @return whether scaling is on */
    public boolean enabled() {
        return enabled;
    }

    /** @return the current scale (1 when disabled) */
    public double scale() {
        return scale;
    }

    /** @return good steps since the last growth or overflow */
    public int goodSteps() {
        return goodSteps;
    }

    /** @return the number of steps skipped because of an overflow */
    public long skippedSteps() {
        return skipped;
    }

    /**
     * Restores the state saved in a checkpoint.
     *
     * @param scale the scale
     * @param goodSteps good steps since the last change
     * @param skipped skipped steps so far
     */
    public void restore(double scale, int goodSteps, long skipped) {
        if (!(scale > 0) || goodSteps < 0 || skipped < 0) {
            throw new IllegalArgumentException("bad loss-scaler state: scale " + scale + ", good steps " + goodSteps);
        }
        this.scale = enabled ? scale : 1.0;
        this.goodSteps = goodSteps;
        this.skipped = skipped;
    }

    /**
     * Records the outcome of a step and adjusts the scale.
     *
     * @param overflow whether the step's gradients held an inf or NaN (the step is then skipped)
     * @return true if the optimizer step should be taken, false if it must be skipped
     */
    public boolean update(boolean overflow) {
        if (!enabled) {
            return true;
        }
        if (overflow) {
            scale *= backoffFactor;
            goodSteps = 0;
            skipped++;
            return false;
        }
        goodSteps++;
        if (goodSteps == growthInterval) {
            scale *= growthFactor;
            goodSteps = 0;
        }
        return true;
    }

    /**
     * Divides the gradients by the scale in place and reports whether any is not finite. Does nothing and
     * returns false when disabled. The check is one fused reduction (one host synchronisation).
     *
     * @param params the parameters whose gradients to unscale
     * @return whether an inf or NaN was found
     */
    public boolean unscaleAndCheck(Collection<Param> params) {
        if (!enabled) {
            return false;
        }
        unscale(params);
        return !Double.isFinite(Gradients.sumOfSquares(params));
    }

    /**
     * Divides the gradients by the scale in place, without reading anything back (nothing when disabled).
     *
     * @param params the parameters
     */
    void unscale(Collection<Param> params) {
        if (enabled) {
            Gradients.scale(params, 1.0 / scale);
        }
    }
}
