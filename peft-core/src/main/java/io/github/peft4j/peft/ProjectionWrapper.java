package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.DenseWeights;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;

/**
 * An {@link AdapterLayer} around a {@link Projection} that is itself a projection of the same sizes, so wrappers of
 * several methods stack on one slot. The wrapper exposes no dense weights of its own (merging another method into
 * the sum of a base and a method's term would change that term); it merges into its base's {@link #denseBase()}.
 */
public abstract class ProjectionWrapper extends AdapterLayer implements Projection {
    private final Projection projection;

    /**
     * @param base the projection in the slot (kept as {@code base_layer})
     * @param state the shared active-adapter state
     */
    protected ProjectionWrapper(Projection base, AdapterState state) {
        super("base_layer", (Module) base, state);
        this.projection = base;
    }

    /** @return the wrapped projection */
    public Projection projection() {
        return projection;
    }

    /**
     * @return the wrapped projection's dense weights
     * @throws PeftException where it has none (a quantised projection, another method's wrapper)
     */
    protected DenseWeights denseBase() {
        DenseWeights d = projection.dense();
        if (d == null) {
            throw new PeftException(getClass().getSimpleName() + " cannot merge into a "
                    + projection.getClass().getSimpleName() + ": it exposes no dense weights");
        }
        return d;
    }

    /** @return whether the wrapped projection has dense weights to merge into */
    @Override
    public boolean canMerge() {
        return projection.dense() != null;
    }

    /** @return null: see the class comment */
    @Override
    public DenseWeights dense() {
        return null;
    }

    /** @return the wrapped projection's {@link Projection#sharedInput} */
    @Override
    public NDArray sharedInput(NDArray x) {
        return projection.sharedInput(x);
    }

    @Override
    public long inFeatures() {
        return projection.inFeatures();
    }

    @Override
    public long outFeatures() {
        return projection.outFeatures();
    }

    @Override
    public NDManager manager() {
        return projection.manager();
    }
}
