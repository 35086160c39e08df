package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;

/**
 * Sentence embeddings from an encoder's last hidden state, as sentence-transformers computes them: the mean over
 * the real (unmasked) tokens, optionally scaled to unit length. No Java numbers enter the ops, so the results can
 * sit on a gradient path.
 */
public final class SentenceEmbeddings {
    private SentenceEmbeddings() {}

    /**
     * The attention-mask-weighted mean of the hidden states: {@code sum_s(h[b, s] * m[b, s]) / max(sum_s m[b, s], 1e-9)}.
     *
     * @param hiddenStates {@code [B, S, H]}, e.g. {@link ModelOutput#hiddenStates()}
     * @param attentionMask {@code [B, S]}, 1 for real tokens and 0 for padding (any numeric type), or null for all ones
     * @return {@code [B, H]} in the dtype of {@code hiddenStates}
     */
    public static NDArray meanPool(NDArray hiddenStates, NDArray attentionMask) {
        long[] h = hiddenStates.getShape().getShape();
        if (h.length != 3) {
            throw new PeftException("meanPool: hidden states must be [batch, seq, hidden], got " + hiddenStates.getShape());
        }
        if (attentionMask == null) {
            return hiddenStates.mean(new int[] {1});
        }
        long[] m = attentionMask.getShape().getShape();
        if (m.length != 2 || m[0] != h[0] || m[1] != h[1]) {
            throw new PeftException("meanPool: attention mask must be [" + h[0] + ", " + h[1] + "], got "
                    + attentionMask.getShape());
        }
        NDArray mask = attentionMask.toDevice(hiddenStates.getDevice(), false)
                .toType(hiddenStates.getDataType(), false).expandDims(2); // [B, S, 1]
        NDArray sum = hiddenStates.mul(mask).sum(new int[] {1}); // [B, H]
        NDArray count = mask.sum(new int[] {1}).maximum(Ops.scalar(sum, 1e-9)); // [B, 1]
        return sum.div(count);
    }

    /**
     * Scales each row to unit L2 norm ({@code x / max(||x||, 1e-12)}), as sentence-transformers' Normalize module.
     *
     * @param embeddings {@code [B, H]}
     * @return {@code [B, H]}
     */
    public static NDArray normalize(NDArray embeddings) {
        NDArray norm = embeddings.square().sum(new int[] {-1}, true).sqrt();
        return embeddings.div(norm.maximum(Ops.scalar(embeddings, 1e-12)));
    }
}
