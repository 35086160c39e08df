package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

/** {@code torch.nn.LayerNorm} over the last axis, with {@code weight} and {@code bias}. */
public class LayerNorm extends Module implements Layer {
    private final Param weight;
    private final Param bias;
    private final float eps;

    /**
     * Creates the layer.
     *
     * @param weight {@code (dim)}
     * @param bias {@code (dim)}
     * @param eps the epsilon added to the variance
     */
    public LayerNorm(NDArray weight, NDArray bias, float eps) {
        this.weight = register("weight", new Param(weight));
        this.bias = register("bias", new Param(bias));
        this.eps = eps;
    }

    /** @return the epsilon */
    public float eps() {
        return eps;
    }

    @Override
    public NDArray forward(NDArray x) {
        return ai.djl.nn.norm.LayerNorm.layerNorm(x, new Shape(weight.shape().get(0)), weight.array(), bias.array(), eps)
                .head();
    }
}
