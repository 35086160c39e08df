package io.github.peft4j.io;

import java.util.Arrays;
import java.util.Objects;

/**
 * The header entry of one tensor in a safetensors file.
 *
 * @param name the tensor name
 * @param dtype the element type in the file
 * @param shape the dimensions (empty for a 0-d scalar); the record keeps its own copy
 * @param begin offset of the first byte, relative to the start of the data section (as in the file)
 * @param end offset one past the last byte, relative to the start of the data section
 */
public record TensorInfo(String name, TensorDType dtype, long[] shape, long begin, long end) implements TensorEntry {

    /**
     * Creates an entry, copying {@code shape}.
     *
     * @param name the tensor name
     * @param dtype the element type in the file
     * @param shape the dimensions
     * @param begin first byte offset within the data section
     * @param end one past the last byte within the data section
     */
    public TensorInfo {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        shape = shape.clone();
    }

    /**
     * Returns a copy of the dimensions.
     *
     * @return the shape as an array (empty for a scalar)
     */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /**
     * Returns the number of bytes the tensor takes in the file, {@code numel() * dtype().byteSize()}.
     *
     * @return the byte length the shape and dtype call for
     * @throws ArithmeticException if the product overflows a long
     */
    public long byteLength() {
        return Math.multiplyExact(numel(), (long) dtype.byteSize());
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TensorInfo t
                && name.equals(t.name)
                && dtype == t.dtype
                && Arrays.equals(shape, t.shape)
                && begin == t.begin
                && end == t.end;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
    }

    @Override
    public String toString() {
        return "TensorInfo[" + name + ", " + dtype + ", " + Arrays.toString(shape) + ", [" + begin + ", " + end + "]]";
    }
}
