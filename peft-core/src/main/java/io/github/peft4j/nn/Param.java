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

    /**
     * Creates a frozen parameter.
     *
     * @param array the initial value, owned by a long-lived manager (never by a step's scope)
     */
    public Param(NDArray array) {
        this.array = array;
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

    /** @return the number of elements */
    public long numel() {
        return array.getShape().size();
    }
}
