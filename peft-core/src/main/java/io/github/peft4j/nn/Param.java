package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;

/**
 * A named tensor owned by a {@link Module}: a base weight or an adapter weight. A parameter is either frozen
 * (no gradient is recorded for it) or trainable (its array requires a gradient).
 */
public final class Param {
    private NDArray array;
    private boolean trainable;
    private final long counted;

    /**
     * Creates a frozen parameter.
     *
     * @param array the initial value, owned by a long-lived manager (never by a step's scope)
     */
    public Param(NDArray array) {
        this.array = array;
        this.counted = -1;
    }

    /**
     * Creates a frozen parameter that counts as a given number of parameters in {@link #numel()} (and so in
     * parameter totals), as HF counts them: a packed 4-bit weight counts the values it packs (two a byte), its
     * quantisation state (absmax, code tables) counts 0, like bitsandbytes' {@code quant_state}.
     *
     * @param array the value
     * @param counted the count, at least 0
     */
    public Param(NDArray array, long counted) {
        if (counted < 0) {
            throw new IllegalArgumentException("a parameter count cannot be negative: " + counted);
        }
        this.array = array;
        this.counted = counted;
    }

    /** @return the current value */
    public NDArray array() {
        return array;
    }

    /**
     * Replaces the value; the trainable flag carries over to the new array. The old array is closed unless
     * it is the same object.
     *
     * @param value the new value
     */
    public void set(NDArray value) {
        if (value != array) {
            NDArray old = array;
            array = value;
            if (trainable) {
                array.setRequiresGradient(true);
            }
            old.close();
        }
    }

    /** @return whether this parameter receives gradients */
    public boolean isTrainable() {
        return trainable;
    }

    /**
     * Marks this parameter trainable (its array requires gradients) or frozen.
     *
     * @param trainable the new state
     */
    public void setTrainable(boolean trainable) {
        if (this.trainable != trainable) {
            this.trainable = trainable;
            array.setRequiresGradient(trainable);
        }
    }

    /** @return the shape of the value */
    public Shape shape() {
        return array.getShape();
    }

    /**
     * @return the number of parameters this stands for: the number of elements, except for a parameter created
     *     with an explicit count (a packed 4-bit weight, quantisation state); the array's own size is
     *     {@code shape().size()}
     */
    public long numel() {
        return counted >= 0 ? counted : array.getShape().size();
    }
}
