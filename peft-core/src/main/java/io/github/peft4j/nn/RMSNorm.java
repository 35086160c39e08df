package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;

/**
 * Llama's RMSNorm: {@code w * x / sqrt(mean(x^2) + eps)}, computed in fp32 and cast back to the input dtype
 * before the weight multiply (as transformers' {@code LlamaRMSNorm}).
 */
public class RMSNorm extends Module implements Layer {
    private final Param weight;
    private final double eps;

    /**
     * Creates the layer.
     *
     * @param weight {@code (dim)}
     * @param eps the epsilon
     */
    public RMSNorm(NDArray weight, double eps) {
        this.weight = register("weight", new Param(weight));
        this.eps = eps;
    }

    @Override
    public NDArray forward(NDArray x) {
        if (FusedOps.enabled()) {
            return FusedOps.rmsNorm(x, weight.array(), eps);
        }
        DataType in = x.getDataType();
        NDArray h = Ops.cast(x, DataType.FLOAT32); // differentiable: toType would cut the gradient in fp16
        NDArray variance = h.square().mean(new int[] {-1}, true);
        NDArray normed = h.div(variance.add(Ops.scalar(variance, eps)).sqrt());
        normed = Ops.cast(normed, in);
        return Ops.cast(weight.array(), in).mul(normed);
    }
}
