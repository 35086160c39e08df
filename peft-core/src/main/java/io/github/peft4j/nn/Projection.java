package io.github.peft4j.nn;

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

    /** @return the dense weights a method may merge into, or null where there are none */
    default DenseWeights dense() {
        return null;
    }
}
