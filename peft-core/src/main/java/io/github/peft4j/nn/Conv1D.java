package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** Hugging Face's GPT-2 {@code Conv1D}: a dense layer whose weight is stored {@code (in, out)}; {@code y = x W + b}. */
public class Conv1D extends Module implements Projection {
    private final Param weight;
    private final Param bias;

    /**
     * Creates the layer over existing arrays.
     *
     * @param weight {@code (in, out)}
     * @param bias {@code (out)}
     */
    public Conv1D(NDArray weight, NDArray bias) {
        this.weight = register("weight", new Param(weight));
        this.bias = register("bias", new Param(bias));
    }

    @Override
    public NDArray forward(NDArray x) {
        // linear(x, W^T view, b): libtorch fuses the bias into the matrix product (addmm), one op instead of two
        return ai.djl.nn.core.Linear.linear(x, weight.array().transpose(), bias.array()).head();
    }

    @Override
    public NDArray forwardNoBias(NDArray x) {
        return x.matMul(weight.array());
    }

    @Override
    public long inFeatures() {
        return weight.shape().get(0);
    }

    @Override
    public long outFeatures() {
        return weight.shape().get(1);
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
        return true;
    }
}
