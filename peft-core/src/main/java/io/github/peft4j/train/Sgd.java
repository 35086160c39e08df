package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.nn.Ops;
import java.util.List;

/**
 * Stochastic gradient descent with the update of {@code torch.optim.SGD}: {@code g += wd*p} (coupled decay,
 * skipped for excluded names); with momentum {@code buf = g} on the first step, then {@code buf = momentum*buf
 * + (1-dampening)*g}, and {@code g = buf} (or {@code g + momentum*buf} with Nesterov); {@code p -= lr*g}. State
 * buffer: {@code momentum_buffer.<param>} (only with momentum).
 */
public final class Sgd extends BaseOptimizer {
    private final double momentum;
    private final double dampening;
    private final boolean nesterov;
    private final double weightDecay;

    private Sgd(Builder b) {
        super(List.of("momentum_buffer"), b.decayExcluded);
        if (b.nesterov && (b.momentum == 0 || b.dampening != 0)) {
            throw new IllegalArgumentException("Nesterov momentum needs momentum > 0 and dampening 0");
        }
        this.momentum = b.momentum;
        this.dampening = b.dampening;
        this.nesterov = b.nesterov;
        this.weightDecay = b.weightDecay;
    }

    /** @return a builder: no momentum, no weight decay */
    public static Builder builder() {
        return new Builder();
    }

    private record Scalars(NDArray negLr, NDArray wd, NDArray momentum, NDArray oneMinusDampening)
            implements StepScalars {}

    @Override
    StepScalars scalars(NDArray like, double lr, long step) {
        return new Scalars(full(like, -lr),
                weightDecay == 0 ? null : Ops.scalar(like, weightDecay),
                momentum == 0 ? null : Ops.scalar(like, momentum),
                dampening == 0 ? null : Ops.scalar(like, 1 - dampening));
    }

    @Override
    void updateOne(String name, NDArray p, NDArray grad, boolean decay, StepScalars st) {
        Scalars s = (Scalars) st;
        NDArray g = grad;
        if (decay && s.wd != null) {
            try (NDArray wp = p.mul(s.wd)) {
                g = grad.add(wp);
            }
        }
        if (s.momentum != null) {
            NDArray buf = buffer("momentum_buffer", name, p, false);
            if (buf == null) {
                buf = g.duplicate();
                keep("momentum_buffer." + name, buf);
            } else {
                buf.muli(s.momentum);
                if (s.oneMinusDampening != null) {
                    try (NDArray d = g.mul(s.oneMinusDampening)) {
                        buf.addi(d);
                    }
                } else {
                    buf.addi(g);
                }
            }
            if (nesterov) {
                try (NDArray mb = buf.mul(s.momentum)) {
                    g = g.add(mb);
                }
            } else {
                g = buf;
            }
        }
        try (NDArray upd = g.mul(s.negLr)) {
            p.addi(upd);
        }
    }

    /** Builds an {@link Sgd}. */
    public static final class Builder extends OptimizerBuilder<Builder> {
        private double momentum;
        private double dampening;
        private boolean nesterov;

        private Builder() {}

        @Override
        Builder self() {
            return this;
        }

        /**
         * @param momentum the momentum factor in [0, 1); 0 = none
         * @return this builder
         */
        public Builder momentum(double momentum) {
            if (!(momentum >= 0 && momentum < 1)) {
                throw new IllegalArgumentException("momentum must be in [0, 1), got " + momentum);
            }
            this.momentum = momentum;
            return this;
        }

        /**
         * @param dampening the momentum dampening in [0, 1]
         * @return this builder
         */
        public Builder dampening(double dampening) {
            if (!(dampening >= 0 && dampening <= 1)) {
                throw new IllegalArgumentException("dampening must be in [0, 1], got " + dampening);
            }
            this.dampening = dampening;
            return this;
        }

        /**
         * @param nesterov whether to use Nesterov momentum
         * @return this builder
         */
        public Builder nesterov(boolean nesterov) {
            this.nesterov = nesterov;
            return this;
        }



        /** @return the optimizer */
        public Sgd build() {
            return new Sgd(this);
        }
    }
}
