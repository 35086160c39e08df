package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** {@code torch.nn.Linear}: weight {@code (out, in)}, optional bias {@code (out)}. */
public class Linear extends Module implements Projection {
    private final Param weight;
    private final Param bias;

    /**
     * Creates a linear layer over existing arrays.
     *
     * @param weight {@code (out, in)}
     * @param bias {@code (out)} or null
     */
    public Linear(NDArray weight, NDArray bias) {
        this.weight = register("weight", new Param(weight));
        this.bias = bias == null ? null : register("bias", new Param(bias));
    }

    @Override
    public NDArray forward(NDArray x) {
        return ai.djl.nn.core.Linear.linear(x, weight.array(), bias == null ? null : bias.array()).head();
    }

    @Override
    public NDArray forwardNoBias(NDArray x) {
        return ai.djl.nn.core.Linear.linear(x, weight.array()).head();
    }

    @Override
    public long inFeatures() {
        return weight.shape().get(1);
    }

    @Override
    public long outFeatures() {
        return weight.shape().get(0);
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
        return false;
    }
}
