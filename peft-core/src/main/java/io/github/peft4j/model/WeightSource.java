package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

/**
 * Where a model's constructor gets each named weight: a checkpoint (shape-checked, with errors naming the
 * tensor and file) or a random initialisation (tests, benchmarks).
 */
public interface WeightSource {
    /** How to initialise a weight that is not loaded. */
    enum Init {
        /** Normal with the model's {@code initializer_range} as standard deviation. */
        NORMAL,
        /** Zeros (biases). */
        ZEROS,
        /** Ones (norm weights). */
        ONES
    }

    /**
     * A weight the model must have.
     *
     * @param name the Hugging Face name
     * @param shape the expected shape
     * @param init how a random source initialises it
     * @return a libtorch-owned array in the model's dtype, on the model's device
     */
    NDArray get(String name, Shape shape, Init init);

    /**
     * A weight of a task head that a checkpoint may lack (a classifier on top of a pretrained encoder); then
     * it is initialised, as transformers does, and a warning is logged.
     *
     * @param name the Hugging Face name
     * @param shape the expected shape
     * @param init how to initialise it when absent
     * @return the array
     */
    NDArray head(String name, Shape shape, Init init);
}
