package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** {@code torch.nn.Linear}: weight {@code (out, in)}, optional bias {@code (out)}. */
public class Linear extends Dense {

    /**
     * Creates a linear layer over existing arrays.
     *
     * @param weight {@code (out, in)}
     * @param bias {@code (out)} or null
     */
    public Linear(NDArray weight, NDArray bias) {
        super(weight, bias, false);
    }
}
