package io.github.peft4j.train;

import ai.djl.engine.EngineException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.data.Example;
import io.github.peft4j.nn.FusedOps;
import io.github.peft4j.nn.Ops;

/**
 * Cross-entropy losses of Hugging Face heads, equal to {@code F.cross_entropy(..., ignore_index=-100)} with
 * mean reduction: the mean of {@code -log softmax(logits)[label]} over the labels that are not {@link
 * Example#IGNORE}. Ignored positions get exactly zero weight (and zero gradient). When every label is ignored
 * the loss is 0 with a zero gradient (torch returns NaN there, which would poison a training run). Only
 * libtorch-owned constants reach the gradient path. With peft4j's fused library loaded ({@link FusedOps#enabled()})
 * the loss is one ATen {@code cross_entropy_loss} (same definition).
 */
public final class Losses {
    private Losses() {}

    /**
     * Causal language modelling: position {@code t} predicts label {@code t+1} (the shift happens here, as in
     * transformers' {@code ForCausalLMLoss}: the labels move left by one and the last position gets -100).
     *
     * @param logits {@code [B, T, V]}
     * @param labels {@code [B, T]} integer token ids, {@code -100} = ignore
     * @return the mean loss, a 0-d array
     */
    public static NDArray causalLm(NDArray logits, NDArray labels) {
        Shape ls = logits.getShape();
        Shape ts = labels.getShape();
        if (ls.dimension() != 3 || ts.dimension() != 2 || ls.get(0) != ts.get(0) || ls.get(1) != ts.get(1)) {
            throw new IllegalArgumentException("causalLm: expected logits [B, T, V] and labels [B, T], got logits "
                    + ls + " and labels " + ts);
        }
        if (ls.get(1) < 2) {
            throw new IllegalArgumentException("causalLm: need at least 2 positions to shift, got logits " + ls);
        }
        // Shift the labels, not the logits (as transformers does): slicing [B, T-1, V] out of the logits would cost
        // a copy of the largest tensor of the step forward and a zero-filled scatter of it in backward.
        NDArray target = labels.getDataType() == DataType.INT64 ? labels : labels.toType(DataType.INT64, false);
        if (FusedOps.enabled()) { // shift + cross_entropy_loss in one call
            try {
                return FusedOps.causalLmLoss(logits, target);
            } catch (EngineException e) {
                throw outOfRange(target.mul(target.neq(Example.IGNORE).toType(DataType.INT64, false)), ls.get(2), e);
            }
        }
        NDArray shifted = target.get(new NDIndex().addAllDim().addSliceDim(1, ls.get(1)))
                .concat(target.getManager().full(new Shape(ls.get(0), 1), Example.IGNORE, DataType.INT64), 1);
        return masked(logits, shifted);
    }

    /**
     * Sequence classification.
     *
     * @param logits {@code [B, C]}
     * @param labels {@code [B]} class ids, {@code -100} = ignore
     * @return the mean loss, a 0-d array
     */
    public static NDArray classification(NDArray logits, NDArray labels) {
        Shape ls = logits.getShape();
        Shape ts = labels.getShape();
        if (ls.dimension() != 2 || ts.dimension() != 1 || ls.get(0) != ts.get(0)) {
            throw new IllegalArgumentException("classification: expected logits [B, C] and labels [B], got logits "
                    + ls + " and labels " + ts);
        }
        return masked(logits, labels);
    }

    /**
     * Token classification (no shift).
     *
     * @param logits {@code [B, T, C]}
     * @param labels {@code [B, T]} class ids, {@code -100} = ignore
     * @return the mean loss, a 0-d array
     */
    public static NDArray tokenClassification(NDArray logits, NDArray labels) {
        Shape ls = logits.getShape();
        Shape ts = labels.getShape();
        if (ls.dimension() != 3 || ts.dimension() != 2 || ls.get(0) != ts.get(0) || ls.get(1) != ts.get(1)) {
            throw new IllegalArgumentException("tokenClassification: expected logits [B, T, C] and labels [B, T], "
                    + "got logits " + ls + " and labels " + ts);
        }
        return masked(logits, labels);
    }

    /**
     * Mean negative log-likelihood over non-ignored labels.
     *
     * @param logits {@code [..., C]}
     * @param labels {@code [...]} (the leading shape of logits)
     */
    private static NDArray masked(NDArray logits, NDArray labels) {
        long classes = logits.getShape().get(logits.getShape().dimension() - 1);
        NDArray target = labels.getDataType() == DataType.INT64 ? labels : labels.toType(DataType.INT64, false);
        if (FusedOps.enabled()) { // one ATen cross_entropy_loss (log-softmax + NLL fused, fwd and bwd)
            try {
                return FusedOps.crossEntropy(logits.reshape(-1, classes), target.reshape(-1));
            } catch (EngineException e) {
                NDArray safe = target.mul(target.neq(Example.IGNORE).toType(DataType.INT64, false));
                throw outOfRange(safe, classes, e);
            }
        }
        // in its own scope: only the loss survives (autograd keeps the log-probabilities its backward reads)
        NDArray loss;
        try (NDScope scope = new NDScope()) {
            loss = composite(logits, target, classes);
            NDScope.unregister(loss);
        }
        NDScope.register(loss);
        return loss;
    }

    private static NDArray composite(NDArray logits, NDArray target, long classes) {
        // label-side arithmetic never touches the gradient path: Java numbers are safe here
        NDArray keep = target.neq(Example.IGNORE);
        NDArray safe = target.mul(keep.toType(DataType.INT64, false)); // ignored -> class 0 (weight 0 below)
        logits = Ops.cast(logits, DataType.FLOAT32); // as transformers: the loss is computed in fp32 (differentiable)
        NDArray logp = logits.logSoftmax(-1); // [..., C]
        NDArray picked;
        try {
            picked = logp.gather(safe.expandDims(-1), -1).squeeze(-1); // [...]
        } catch (EngineException e) { // libtorch checks the range; say which labels are wrong
            throw outOfRange(safe, classes, e);
        }
        NDArray weight = keep.toType(logp.getDataType(), false);
        NDArray count = weight.sum().maximum(Ops.scalar(weight, 1)); // no gradient; >= 1 so 0/1 when none
        return picked.mul(weight).sum().div(count).neg();
    }

    private static IllegalArgumentException outOfRange(NDArray safe, long classes, EngineException e) {
        return new IllegalArgumentException("label out of range [0, " + classes + ") (or -100 to ignore): min "
                + safe.min().getLong() + ", max " + safe.max().getLong(), e);
    }
}
