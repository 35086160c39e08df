package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** A module with one input and one output: what fills a replaceable slot (a projection, an embedding). */
public interface Layer {
    /**
     * Applies the layer.
     *
     * @param x the input
     * @return the output
     */
    NDArray forward(NDArray x);
}
