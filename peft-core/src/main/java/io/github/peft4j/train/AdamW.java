package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.nn.Ops;
import java.util.List;
import java.util.Objects;
import java.util.function.Predicate;

/**
 * AdamW with the update of {@code torch.optim.AdamW} (single-tensor path, {@code amsgrad=False}): for step
 * {@code t}, {@code p *= 1 - lr*wd} (decoupled decay, skipped for excluded names), {@code m = lerp(m, g,
 * 1-beta1)}, {@code v = beta2*v + (1-beta2)*g*g}, {@code p -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) +
 * eps)}. State buffers are {@code exp_avg.<param>} and {@code exp_avg_sq.<param>}; each update is about ten
 * in-place libtorch calls per parameter.
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

    /** This step's values for one device and dtype. */
    private record Scalars(NDArray decay, NDArray negStepSize, NDArray bc2Sqrt, NDArray oneMinusBeta1,
            NDArray beta2, NDArray oneMinusBeta2, NDArray eps) implements StepScalars {}

    @Override
    StepScalars scalars(NDArray like, double lr, long step) {
        double bc1 = 1 - Math.pow(beta1, step);
        double bc2 = 1 - Math.pow(beta2, step);
        return new Scalars(
                weightDecay == 0 ? null : full(like, 1 - lr * weightDecay),
                full(like, -lr / bc1),
                full(like, Math.sqrt(bc2)),
                Ops.scalar(like, 1 - beta1),
                Ops.scalar(like, beta2),
                Ops.scalar(like, 1 - beta2),
                Ops.scalar(like, eps));
    }

    /** A libtorch-owned 0-d constant that lives in the step's scope. */
    static NDArray full(NDArray like, double v) {
        return like.getManager().full(new Shape(), (float) v, like.getDataType());
    }

    @Override
    void update(String name, NDArray p, NDArray grad, boolean decay, StepScalars st) {
        Scalars s = (Scalars) st;
        NDArray m = buffer("exp_avg", name, p, true);
        NDArray v = buffer("exp_avg_sq", name, p, true);
        if (decay && s.decay != null) {
            p.muli(s.decay);
        }
        try (NDArray d = grad.sub(m)) { // m.lerp_(g, 1 - beta1) = m + (1 - beta1) * (g - m)
            m.addi(d.muli(s.oneMinusBeta1));
        }
        try (NDArray g2 = grad.mul(grad)) {
            v.muli(s.beta2).addi(g2.muli(s.oneMinusBeta2));
        }
        try (NDArray denom = v.sqrt(); NDArray upd = m.div(denom.divi(s.bc2Sqrt).addi(s.eps))) {
            p.addi(upd.muli(s.negStepSize));
        }
    }

    /** Builds an {@link AdamW}. */
    public static final class Builder {
        private double beta1 = 0.9;
        private double beta2 = 0.999;
        private double eps = 1e-8;
        private double weightDecay;
        private Predicate<String> decayExcluded = DEFAULT_DECAY_EXCLUDED;

        private Builder() {}

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

        /**
         * @param weightDecay the decoupled weight decay, &gt;= 0
         * @return this builder
         */
        public Builder weightDecay(double weightDecay) {
            if (!(weightDecay >= 0)) {
                throw new IllegalArgumentException("weight decay must be >= 0, got " + weightDecay);
            }
            this.weightDecay = weightDecay;
            return this;
        }

        /**
         * Which parameter names get no weight decay. The default excludes names ending in {@code bias} and
         * names containing {@code norm}, {@code LayerNorm} or {@code ln_}.
         *
         * @param excluded true for names without decay
         * @return this builder
         */
        public Builder decayExcluded(Predicate<String> excluded) {
            this.decayExcluded = Objects.requireNonNull(excluded, "excluded");
            return this;
        }

        /** @return the optimizer */
        public AdamW build() {
            return new AdamW(this);
        }
    }
}
