package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * What {@link Linear} and {@link Conv1D} share: a weight, an optional bias, and {@code y = x W^T + b} computed
 * with libtorch's {@code linear} (the bias fused into the matrix product). Subclasses only say how their stored
 * weight is laid out.
 */
abstract class Dense extends Module implements Projection, DenseWeights {
    private final Param weight;
    private final Param bias;
    private final boolean fanInFanOut;

    /**
     * @param weight the stored weight, {@code (out, in)} or, with {@code fanInFanOut}, {@code (in, out)}
     * @param bias {@code (out)} or null
     * @param fanInFanOut whether the weight is stored {@code (in, out)}
     */
    Dense(NDArray weight, NDArray bias, boolean fanInFanOut) {
        this.weight = register("weight", new Param(weight));
        this.bias = bias == null ? null : register("bias", new Param(bias));
        this.fanInFanOut = fanInFanOut;
    }

    /**
     * {@inheritDoc} The weight and bias are cast to the input's dtype on the gradient path (a no-op when they match;
     * an fp32 trainable bias or modules_to_save copy in an fp16 model).
     */
    @Override
    public NDArray forward(NDArray x) {
        DataType dt = x.getDataType();
        NDArray w = Ops.cast(weight.array(), dt); // fp32 trainable leaves (BitFit, modules_to_save) cast in forward
        NDArray b = bias == null ? null : Ops.cast(bias.array(), dt);
        if (FusedOps.enabled()) {
            return FusedOps.linear(x, w, b, fanInFanOut);
        }
        return ai.djl.nn.core.Linear.linear(x, fanInFanOut ? w.transpose() : w, b).head();
    }

    @Override
    public long inFeatures() {
        return weight.shape().get(fanInFanOut ? 0 : 1);
    }

    @Override
    public long outFeatures() {
        return weight.shape().get(fanInFanOut ? 1 : 0);
    }

    @Override
    public Param weight() {
        return weight;
    }

    @Override
    public Param bias() {
        return bias;
    }

    @Override
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    @Override
    public ai.djl.ndarray.NDManager manager() {
        return weight.array().getManager();
    }

    @Override
    public DenseWeights dense() {
        return this;
    }
}
