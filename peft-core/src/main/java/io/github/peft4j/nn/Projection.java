package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/**
 * A dense projection {@code y = x W^T + b}: a {@link Linear} ({@code W} stored {@code (out, in)}) or GPT-2's
 * {@link Conv1D} ({@code W} stored {@code (in, out)}). Methods that wrap projections (LoRA, IA3, adapters)
 * see only this interface.
 */
public interface Projection extends Layer {
    /** @return input features */
    long inFeatures();

    /** @return output features */
    long outFeatures();

    /** @return the weight parameter, in its stored layout */
    Param weight();

    /** @return the bias parameter, or null */
    Param bias();

    /** @return true when the weight is stored {@code (in, out)} (GPT-2 Conv1D), as HF's {@code fan_in_fan_out} */
    boolean fanInFanOut();

    /**
     * Applies the projection without its bias.
     *
     * @param x the input {@code [..., in]}
     * @return {@code x W^T} with shape {@code [..., out]}
     */
    NDArray forwardNoBias(NDArray x);
}
