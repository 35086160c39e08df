package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.List;

/**
 * AdamW with the update of {@code torch.optim.AdamW} ({@code amsgrad=False}): for step {@code t},
 * {@code p -= lr*wd*p} (decoupled decay, skipped for excluded names), {@code m = beta1*m + (1-beta1)*g},
 * {@code v = beta2*v + (1-beta2)*g*g}, {@code p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)}.
 * Each parameter is updated by one fused native call (the bias corrections are folded into the step size and
 * eps, which is the same value; float rounding differs from torch's by a few ulps, tested within 1e-6 over 5
 * steps). State buffers are {@code exp_avg.<param>} and {@code exp_avg_sq.<param>}.
 */
public final class AdamW extends BaseOptimizer {
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final double weightDecay;

    private AdamW(Builder b) {
        super(List.of("exp_avg", "exp_avg_sq"), b.decayExcluded);
        this.beta1 = b.beta1;
        this.beta2 = b.beta2;
        this.eps = b.eps;
        this.weightDecay = b.weightDecay;
    }

    /** @return a builder with torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0 */
    public static Builder builder() {
        return new Builder();
    }

    /** This step's bias-corrected factors (the same for every parameter). */
    private record Scalars(float lr, float stepSize, float epsHat, double lrExact, long step) implements StepScalars {}

    @Override
    StepScalars scalars(NDArray like, double lr, long step) {
        double bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
        // torch: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps); multiplied through by sqrt(bc2):
        //        p -= (lr*sqrt(bc2)/bc1) * m / (sqrt(v) + eps*sqrt(bc2))  -- the same value, one fused call
        return new Scalars((float) lr, (float) (lr * bc2Sqrt / (1 - Math.pow(beta1, step))), (float) (eps * bc2Sqrt), lr, step);
    }

    @Override
    void updateOne(String name, NDArray p, NDArray grad, boolean decay, StepScalars st) {
        Scalars s = (Scalars) st;
        NDArray m = buffer("exp_avg", name, p, true);
        NDArray v = buffer("exp_avg_sq", name, p, true);
        boolean decoupled = decay && weightDecay != 0;
        if (io.github.peft4j.nn.FusedOps.enabled()) { // ATen's fused AdamW: one kernel per parameter
            io.github.peft4j.nn.FusedOps.adamw(p, grad, m, v, s.lrExact, beta1, beta2, decoupled ? weightDecay : 0, eps, s.step);
            return;
        }
        // One native call (DJL's fused kernel, no gradient recording): p -= lr*wd*p when decoupled;
        // m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g; p -= stepSize * m / (sqrt(v) + epsHat).
        // Rescale 1 and clip -1 switch off DJL's gradient rescaling and clipping.
        JniUtils.adamUpdate((PtNDArray) p, (PtNDArray) grad, (PtNDArray) m, (PtNDArray) v, s.lr, s.stepSize,
                decoupled ? (float) weightDecay : 0f, 1f, -1f, (float) beta1, (float) beta2, s.epsHat, decoupled);
    }

    /** Builds an {@link AdamW}. */
    public static final class Builder extends OptimizerBuilder<Builder> {
        private double beta1 = 0.9;
        private double beta2 = 0.999;
        private double eps = 1e-8;

        private Builder() {}

        @Override
        Builder self() {
            return this;
        }

        /**
         * @param beta1 the first-moment decay in [0, 1)
         * @param beta2 the second-moment decay in [0, 1)
         * @return this builder
         */
        public Builder betas(double beta1, double beta2) {
            if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
                throw new IllegalArgumentException("betas must be in [0, 1), got (" + beta1 + ", " + beta2 + ")");
            }
            this.beta1 = beta1;
            this.beta2 = beta2;
            return this;
        }

        /**
         * @param eps the denominator term, &gt; 0
         * @return this builder
         */
        public Builder eps(double eps) {
            if (!(eps > 0)) {
                throw new IllegalArgumentException("eps must be > 0, got " + eps);
            }
            this.eps = eps;
            return this;
        }



        /** @return the optimizer */
        public AdamW build() {
            return new AdamW(this);
        }
    }
}
