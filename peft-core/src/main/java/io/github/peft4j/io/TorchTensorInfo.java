package io.github.peft4j.io;

import java.util.Arrays;
import java.util.Objects;

/**
 * One tensor of a {@code torch.save} file: a strided view of a storage record, as {@code torch._utils
 * ._rebuild_tensor_v2} describes it. Several tensors may view the same storage.
 *
 * @param name the state-dict key
 * @param dtype the element type of the storage
 * @param shape the dimensions (empty for a 0-d scalar); the record keeps its own copy
 * @param stride the step, in elements, between neighbours along each dimension; the record keeps its own copy
 * @param storageKey the storage record's name under {@code <archive>/data/}
 * @param storageOffset the element index in the storage of the tensor's first element
 */
public record TorchTensorInfo(String name, TensorDType dtype, long[] shape, long[] stride, String storageKey,
        long storageOffset) implements TensorEntry {

    /**
     * Creates an entry, copying {@code shape} and {@code stride}.
     *
     * @param name the state-dict key
     * @param dtype the element type
     * @param shape the dimensions
     * @param stride the strides in elements, as many as dimensions
     * @param storageKey the storage record name
     * @param storageOffset the first element's index in the storage
     */
    public TorchTensorInfo {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(storageKey, "storageKey");
        shape = shape.clone();
        stride = stride.clone();
        if (shape.length != stride.length) {
            throw new IllegalArgumentException(name + ": " + shape.length + " dimensions but " + stride.length
                    + " strides");
        }
    }

    /**
     * Returns a copy of the dimensions.
     *
     * @return the shape (empty for a scalar)
     */
    @Override
    public long[] shape() {
        return shape.clone();
    }

    /**
     * Returns a copy of the strides.
     *
     * @return the strides in elements
     */
    @Override
    public long[] stride() {
        return stride.clone();
    }

    /**
     * Returns whether the elements lie in row-major order, one after another, in the storage (dimensions of
     * size 1 may have any stride).
     *
     * @return true for a contiguous view
     */
    public boolean isContiguous() {
        long expected = 1;
        for (int i = shape.length - 1; i >= 0; i--) {
            if (shape[i] != 1 && stride[i] != expected) {
                return false;
            }
            expected *= shape[i];
        }
        return true;
    }

    /**
     * Returns the number of storage elements the view spans: one past the largest element index it touches,
     * minus {@link #storageOffset()}; 0 for an empty tensor.
     *
     * @return the span in elements
     * @throws ArithmeticException if it overflows a long
     */
    public long spanElements() {
        long last = 0;
        for (int i = 0; i < shape.length; i++) {
            if (shape[i] == 0) {
                return 0;
            }
            last = Math.addExact(last, Math.multiplyExact(shape[i] - 1, stride[i]));
        }
        return Math.addExact(last, 1);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof TorchTensorInfo t
                && name.equals(t.name)
                && dtype == t.dtype
                && Arrays.equals(shape, t.shape)
                && Arrays.equals(stride, t.stride)
                && storageKey.equals(t.storageKey)
                && storageOffset == t.storageOffset;
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, dtype, Arrays.hashCode(shape), Arrays.hashCode(stride), storageKey, storageOffset);
    }

    @Override
    public String toString() {
        return "TorchTensorInfo[" + name + ", " + dtype + ", shape " + Arrays.toString(shape) + ", stride "
                + Arrays.toString(stride) + ", storage '" + storageKey + "' + " + storageOffset + "]";
    }
}
