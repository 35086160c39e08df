package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;

/**
 * A forward-only projection {@code [..., in] -> [..., out]}: what methods that wrap projections (LoRA, IA3,
 * adapters) see. A {@link Linear} or GPT-2 {@link Conv1D} also exposes its dense weights ({@link #dense}) for
 * merging; a projection without them (a 4-bit quantised one, or another method's wrapper) can still be wrapped,
 * and methods then simply cannot merge into it.
 */
public interface Projection extends Layer {
    /** @return input features */
    long inFeatures();

    /** @return output features */
    long outFeatures();

    /** @return the manager owning this projection's arrays (where a wrapper puts its own) */
    NDManager manager();

    /**
     * The array a wrapper should read the projection's input from, for its own terms and for this projection alike
     * (a wrapper calls it once per forward pass and passes the result to {@link #forward} too). Plain projections
     * return the input itself; a 4-bit one under a {@link RecomputeTape} returns the tape's shared leaf for it, so the
     * wrapper's gradient reaches the input together with the projection's recomputed one.
     *
     * @param x the input
     * @return the array to read it from
     */
    default NDArray sharedInput(NDArray x) {
        return x;
    }

    /** @return the dense weights a method may merge into, or null where there are none */
    default DenseWeights dense() {
        return null;
    }
}
