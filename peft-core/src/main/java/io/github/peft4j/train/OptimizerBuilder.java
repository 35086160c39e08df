package io.github.peft4j.train;

import java.util.Objects;
import java.util.function.Predicate;

/**
 * The settings every optimizer builder shares: weight decay and which parameter names are exempt from it.
 *
 * @param <B> the concrete builder
 */
public abstract class OptimizerBuilder<B extends OptimizerBuilder<B>> {
    double weightDecay;
    Predicate<String> decayExcluded = BaseOptimizer.DEFAULT_DECAY_EXCLUDED;

    OptimizerBuilder() {}

    /** @return this builder as its concrete type */
    abstract B self();

    /**
     * @param weightDecay the weight decay, &gt;= 0 (AdamW: decoupled, {@code p -= lr*wd*p}; SGD: L2, added to
     *     the gradient), as torch applies it
     * @return this builder
     */
    public B weightDecay(double weightDecay) {
        if (!(weightDecay >= 0)) {
            throw new IllegalArgumentException("weight decay must be >= 0, got " + weightDecay);
        }
        this.weightDecay = weightDecay;
        return self();
    }

    /**
     * Which parameter names get no weight decay. The default excludes names ending in {@code bias} and
     * names containing {@code norm}, {@code LayerNorm} or {@code ln_}.
     *
     * @param excluded true for names without decay
     * @return this builder
     */
    public B decayExcluded(Predicate<String> excluded) {
        this.decayExcluded = Objects.requireNonNull(excluded, "excluded");
        return self();
    }
}
