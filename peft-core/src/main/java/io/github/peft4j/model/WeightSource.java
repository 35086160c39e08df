package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Module;

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

    /**
     * A linear layer {@code y = x W^T + b} of a decoder ({@code W (out, in)} at {@code <path>.weight}): a dense
     * {@link Linear} here; a source that quantises (a bnb-4bit checkpoint, or quantise-on-load) returns a 4-bit
     * {@link io.github.peft4j.nn.quant.Linear4bit} where its {@link Quantization} says so.
     *
     * @param path the module path, e.g. {@code model.layers.0.self_attn.q_proj}
     * @param in input features
     * @param out output features
     * @param bias whether the layer has a bias
     * @return a module that is a {@link io.github.peft4j.nn.Projection}
     */
    default Module linear(String path, long in, long out, boolean bias) {
        return new Linear(get(path + ".weight", new Shape(out, in), Init.NORMAL),
                bias ? get(path + ".bias", new Shape(out), Init.ZEROS) : null);
    }

    /**
     * A GPT-2 {@code Conv1D} {@code y = x W + b} ({@code W (in, out)} at {@code <path>.weight}, with a bias): a dense
     * {@link io.github.peft4j.nn.Conv1D} here; a quantising source returns a 4-bit
     * {@link io.github.peft4j.nn.quant.Linear4bit} of the transposed {@code (out, in)} weight, as transformers does.
     *
     * @param path the module path, e.g. {@code transformer.h.0.attn.c_attn}
     * @param in input features
     * @param out output features
     * @return a module that is a {@link io.github.peft4j.nn.Projection}
     */
    default Module conv1d(String path, long in, long out) {
        return new io.github.peft4j.nn.Conv1D(get(path + ".weight", new Shape(in, out), Init.NORMAL),
                get(path + ".bias", new Shape(out), Init.ZEROS));
    }

    /**
     * A linear layer of a task head that a checkpoint may lack ({@link #head}): a dense {@link Linear} here; a
     * quantising source makes it 4-bit where its {@link Quantization} says so (transformers quantises heads too).
     *
     * @param path the module path, e.g. {@code classifier}
     * @param in input features
     * @param out output features
     * @return a module that is a {@link io.github.peft4j.nn.Projection}
     */
    default Module headLinear(String path, long in, long out) {
        return new Linear(head(path + ".weight", new Shape(out, in), Init.NORMAL),
                head(path + ".bias", new Shape(out), Init.ZEROS));
    }
}
