package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.nn.Param;
import java.util.Collection;

/**
 * Global-norm gradient clipping with the semantics of {@code torch.nn.utils.clip_grad_norm_}: the 2-norm of
 * all gradients taken together; when it exceeds {@code maxNorm} every gradient is multiplied in place by
 * {@code maxNorm / (norm + 1e-6)}. (DJL's own {@code clipGrad} clips element-wise, which is not the same.)
 */
public final class GradClip {
    private GradClip() {}

    /**
     * The total 2-norm of the gradients of the given parameters (parameters without a gradient are skipped).
     *
     * @param params the parameters
     * @return the norm (infinite or NaN if a gradient is)
     */
    public static double norm(Collection<Param> params) {
        double sumSq = 0;
        try (NDScope scope = new NDScope()) {
            for (Param p : params) {
                if (p.array().hasGradient()) {
                    NDArray g = p.array().getGradient();
                    sumSq += g.toType(ai.djl.ndarray.types.DataType.FLOAT64, false).square().sum().getDouble();
                }
            }
        }
        return Math.sqrt(sumSq);
    }

    /**
     * Clips the gradients in place.
     *
     * @param params the parameters
     * @param maxNorm the largest allowed total norm (positive)
     * @return the total norm before clipping
     */
    public static double globalNorm(Collection<Param> params, double maxNorm) {
        if (!(maxNorm > 0)) {
            throw new IllegalArgumentException("max gradient norm must be positive, got " + maxNorm);
        }
        double total = norm(params);
        double coef = maxNorm / (total + 1e-6);
        if (coef < 1.0) {
            scale(params, coef);
        }
        return total;
    }

    /** A libtorch-owned 0-d constant in the current scope (not cached: factors differ every step). */
    static NDArray scope(NDArray like, double v) {
        return like.getManager().full(new ai.djl.ndarray.types.Shape(), (float) v, like.getDataType());
    }

    /**
     * Multiplies every gradient in place.
     *
     * @param params the parameters
     * @param factor the factor
     */
    static void scale(Collection<Param> params, double factor) {
        try (NDScope scope = new NDScope()) {
            for (Param p : params) {
                if (p.array().hasGradient()) {
                    NDArray g = p.array().getGradient();
                    g.muli(scope(g, factor));
                }
            }
        }
    }
}
