package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** Hugging Face's GPT-2 {@code Conv1D}: a dense layer whose weight is stored {@code (in, out)}; {@code y = x W + b}. */
public class Conv1D extends Dense {

    /**
     * Creates the layer over existing arrays.
     *
     * @param weight {@code (in, out)}
     * @param bias {@code (out)}
     */
    public Conv1D(NDArray weight, NDArray bias) {
        super(weight, bias, true);
    }
}
