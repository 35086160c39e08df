package io.github.peft4j.io;

import ai.djl.ndarray.types.Shape;

/** What a weights file says about one tensor: its name, element type and dimensions. */
public interface TensorEntry {
    /** @return the tensor name */
    String name();

    /** @return the element type in the file */
    TensorDType dtype();

    /** @return a copy of the dimensions (empty for a scalar) */
    long[] shape();

    /** @return the shape as a DJL {@link Shape} ({@code new Shape()} for a scalar) */
    default Shape djlShape() {
        return new Shape(shape());
    }

    /**
     * @return the number of elements, 1 for a scalar
     * @throws ArithmeticException if the product overflows a long
     */
    default long numel() {
        long n = 1;
        for (long d : shape()) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }
}
