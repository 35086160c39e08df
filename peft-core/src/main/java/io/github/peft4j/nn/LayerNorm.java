package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
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
        // parameters cast to the input's dtype on the gradient path (no-op when they match: an fp32 trainable bias
        // or modules_to_save copy in an fp16 model)
        DataType dt = x.getDataType();
        return ai.djl.nn.norm.LayerNorm.layerNorm(x, new Shape(weight.shape().get(0)), Ops.cast(weight.array(), dt),
                Ops.cast(bias.array(), dt), eps).head();
    }
}
