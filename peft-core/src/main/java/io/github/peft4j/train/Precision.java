package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.util.Collection;
import java.util.Map;

/**
 * The numeric mode of a run. A FLOAT32 model trains in fp32. A FLOAT16 model computes in fp16 with its frozen base
 * weights in fp16, while every trainable parameter is an fp32 leaf that the forward pass casts to fp16 through a
 * differentiable cast ({@link io.github.peft4j.nn.Ops#cast}): backward writes fp32 gradients straight into the
 * parameters the optimizer updates, so there are no master copies to keep in sync. The loss (fp32: the logits are
 * cast differentiably before it) is multiplied by a dynamic {@link LossScaler} scale before backward; the
 * gradients are divided by it again, one fused reduction gives both the finiteness check and the global norm, a
 * step with an inf or NaN gradient is skipped and the scale lowered (torch.amp.GradScaler's policy).
 */
final class Precision {
    private final boolean fp16;
    private final LossScaler scaler;

    /**
     * @param model the model (its dtype decides the mode)
     * @param trainable the trainable parameters (all FLOAT32 for an fp16 model)
     * @param custom a scaler to use instead of the default, or null (the default is enabled exactly for fp16)
     * @throws PeftException naming a trainable parameter that is not FLOAT32 in an fp16 model
     */
    Precision(TransformerModel model, Map<String, Param> trainable, LossScaler custom) {
        this.fp16 = model.dtype() == DataType.FLOAT16;
        if (fp16) {
            trainable.forEach((k, p) -> {
                if (p.array().getDataType() != DataType.FLOAT32) {
                    throw new PeftException("PeftTrainer: trainable parameter '" + k + "' is " + p.array().getDataType().name()
                            + " in a FLOAT16 model; trainable parameters must be FLOAT32 leaves that the forward pass casts "
                            + "to the compute dtype (Ops.cast)");
                }
            });
        }
        this.scaler = custom != null ? custom : new LossScaler(fp16);
    }

    /** @return the loss scaler (disabled for fp32 unless one was given) */
    LossScaler scaler() {
        return scaler;
    }

    /** @return a description for the log */
    String describe() {
        String s = fp16 ? "fp16 compute with fp32 trainable parameters" : "fp32";
        return scaler.enabled() ? s + " and dynamic loss scaling (initial scale " + scaler.scale() + ")" : s;
    }

    /**
     * The array to call backward on for one micro-batch: its loss times its share of the step's labelled items
     * times the loss scale (a libtorch-owned factor; the loss is fp32, where 2^16 fits).
     *
     * @param loss the micro-batch's mean loss, a 0-d fp32 array
     * @param share its weight within the step
     * @return the array to differentiate
     */
    NDArray forBackward(NDArray loss, double share) {
        double factor = share * scaler.scale();
        return factor == 1.0 ? loss : loss.mul(GradClip.scope(loss, factor));
    }

    /**
     * Divides the gradients by the loss scale in place (no host synchronisation); after-backward hooks then see
     * true gradients.
     *
     * @param params the trainable parameters
     */
    void unscale(Collection<Param> params) {
        scaler.unscale(params);
    }

    /**
     * After the after-backward hooks: one fused reduction of the gradients (only when loss scaling or clipping
     * needs it) gives the finiteness check and the global norm; the scaler records the outcome; a step to take is
     * clipped to {@code maxGradNorm}.
     *
     * @param params the trainable parameters
     * @param maxGradNorm the clipping threshold (0: no clipping)
     * @return true to take the optimizer step, false to skip it (inf or NaN under loss scaling)
     */
    boolean checkAndClip(Collection<Param> params, double maxGradNorm) {
        boolean clip = maxGradNorm > 0;
        if (!scaler.enabled() && !clip) {
            return true;
        }
        double total = GradClip.norm(params);
        boolean take = scaler.update(scaler.enabled() && !Double.isFinite(total));
        if (take && clip) {
            GradClip.clip(params, total, maxGradNorm);
        }
        return take;
    }
}
