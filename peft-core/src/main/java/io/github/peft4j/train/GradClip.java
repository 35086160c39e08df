package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.nn.Param;
import java.util.Collection;

/**
 * Global-norm gradient clipping with the semantics of {@code torch.nn.utils.clip_grad_norm_}: the 2-norm of
 * all gradients taken together; when it exceeds {@code maxNorm} every gradient is multiplied in place by
 * {@code maxNorm / (norm + 1e-6)}. (DJL's own {@code clipGrad} clips element-wise, which is not the same.) The
 * norm is one fused reduction over all parameters: one host synchronisation per call, not one per parameter.
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
        return Math.sqrt(Gradients.sumOfSquares(params));
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
        clip(params, total, maxNorm);
        return total;
    }

    /**
     * Clips with a norm already measured (no further host synchronisation).
     *
     * @param params the parameters
     * @param total their gradients' total norm
     * @param maxNorm the threshold
     */
    static void clip(Collection<Param> params, double total, double maxNorm) {
        double coef = maxNorm / (total + 1e-6);
        if (coef < 1.0) {
            Gradients.scale(params, coef);
        }
    }

    /** A libtorch-owned 0-d constant in the current scope (not cached: factors differ every step). */
    static NDArray scope(NDArray like, double v) {
        return like.getManager().full(new ai.djl.ndarray.types.Shape(), (float) v, like.getDataType());
    }
}
