package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** Dropout with probability {@code p}, active only in training mode; identity otherwise. */
public class Dropout extends Module implements Layer {
    private final float p;

    /**
     * Creates the layer.
     *
     * @param p the drop probability in [0, 1)
     */
    public Dropout(float p) {
        if (p < 0 || p >= 1) {
            throw new IllegalArgumentException("dropout probability must be in [0, 1), got " + p);
        }
        this.p = p;
    }

    @Override
    public NDArray forward(NDArray x) {
        if (!isTraining() || p == 0f) {
            return x;
        }
        return ai.djl.nn.norm.Dropout.dropout(x, p, true).head();
    }

    /** @return the drop probability */
    public float p() {
        return p;
    }
}
