package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.nn.Param;
import java.util.Collection;

/**
 * Reading and changing the gradients of trainable parameters. A parameter "has" a gradient only once backward
 * wrote one: DJL's {@code getGradient()} answers a fresh zeros array when {@code .grad} is undefined (writing into
 * it changes nothing), so gradients are read through libtorch here, which answers null then.
 */
final class Gradients {
    private Gradients() {}

    /**
     * @param p a parameter
     * @return its gradient (a handle in the caller's scope), or null if it is frozen or backward has not reached it
     */
    static NDArray of(Param p) {
        if (!p.isTrainable()) {
            return null;
        }
        return JniUtils.getGradient((PtNDArray) p.array());
    }

    /**
     * The sum of the squares of every gradient, in float64, read to the host once: the per-parameter sums are
     * stacked and added on the device, so the global norm and the finiteness check cost one synchronisation (it
     * is inf or NaN exactly when an element is, or when the squares overflow float64, which is conservative).
     *
     * @param params the parameters (those without a gradient count as zero)
     * @return the sum of squares
     */
    static double sumOfSquares(Collection<Param> params) {
        try (NDScope scope = new NDScope()) {
            NDList parts = new NDList();
            for (Param p : params) {
                NDArray g = of(p);
                if (g != null) {
                    // a copy for the reduction only: not a gradient path
                    parts.add(g.toType(DataType.FLOAT64, false).square().sum());
                }
            }
            if (parts.isEmpty()) {
                return 0;
            }
            return (parts.size() == 1 ? parts.get(0) : NDArrays.stack(parts).sum()).getDouble();
        }
    }

    /**
     * Multiplies every gradient in place (no host synchronisation).
     *
     * @param params the parameters
     * @param factor the factor
     */
    static void scale(Collection<Param> params, double factor) {
        try (NDScope scope = new NDScope()) {
            for (Param p : params) {
                NDArray g = of(p);
                if (g != null) {
                    g.muli(GradClip.scope(g, factor));
                }
            }
        }
    }

    /**
     * Zeroes every gradient in place (DJL accumulates gradients across backward calls until they are zeroed).
     *
     * @param params the parameters
     */
    static void zero(Collection<Param> params) {
        for (Param p : params) {
            if (p.isTrainable() && JniUtils.requiresGrad((PtNDArray) p.array())) {
                JniUtils.zeroGrad((PtNDArray) p.array());
            }
        }
    }
}
