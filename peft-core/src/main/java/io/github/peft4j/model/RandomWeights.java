package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

/**
 * Random initialisation as transformers' {@code _init_weights}: normal(0, std) matrices and embeddings,
 * zero biases, unit norm weights. Seed libtorch's generator ({@code Engine.getInstance().setRandomSeed}) for
 * reproducible weights.
 */
public final class RandomWeights implements WeightSource {
    private final NDManager manager;
    private final DataType dtype;
    private final float std;

    /**
     * @param manager owns the arrays
     * @param dtype their dtype
     * @param std the standard deviation of normal weights ({@code initializer_range}, 0.02 in most configs)
     */
    public RandomWeights(NDManager manager, DataType dtype, float std) {
        this.manager = manager;
        this.dtype = dtype;
        this.std = std;
    }

    @Override
    public NDArray get(String name, Shape shape, Init init) {
        switch (init) {
            case ZEROS:
                return manager.zeros(shape, dtype);
            case ONES:
                return manager.ones(shape, dtype);
            default:
                return manager.randomNormal(0f, std, shape, DataType.FLOAT32).toType(dtype, false);
        }
    }

    @Override
    public NDArray head(String name, Shape shape, Init init) {
        return get(name, shape, init);
    }
}
