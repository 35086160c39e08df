package io.github.peft4j.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.PeftException;

/**
 * One decoding run of a {@link LanguageModel} over a batch: {@link #start} feeds the prompts and returns the
 * logits of the next token, each {@link #next} appends one token per row and returns the logits after it,
 * {@link #close} frees what the session holds. The session owns its state (key/value cache, attention mask,
 * positions): a caller only picks tokens. Several sessions may be open at once, each with its own cache
 * (proxy-tuning drives three in lockstep). Not thread-safe.
 *
 * <p>The returned logits are {@code [B, V]} fp32 arrays on the model's device. A session creates its
 * intermediates in its own {@link NDScope} and registers the returned array in the caller's innermost scope
 * if one is open (so it is freed with the caller's step); without an open scope the caller closes it.
 */
public interface DecodeSession extends AutoCloseable {

    /**
     * Feeds a LEFT-padded batch of prompts (restarting the session if it ran before).
     *
     * @param inputIds {@code [B][L]} token ids, every row the same length, padding before the prompt
     * @param attentionMask {@code [B][L]} 1 for real tokens, 0 for padding, or null (all ones)
     * @return {@code [B, V]} fp32 logits of the position after the last one
     */
    NDArray start(long[][] inputIds, long[][] attentionMask);

    /**
     * Appends one token to every row (finished rows too: the generator feeds them padding).
     *
     * @param tokens {@code [B]} token ids
     * @return {@code [B, V]} fp32 logits of the position after the new tokens
     */
    NDArray next(long[] tokens);

    /** Frees the session's cache; later calls fail. Closing twice is allowed. */
    @Override
    void close();

    /**
     * Checks a LEFT-padded batch the way every session and the generator expect it: non-empty, rectangular,
     * ids inside the vocabulary, the last position of every row real.
     *
     * @param inputIds {@code [B][L]} token ids
     * @param attentionMask {@code [B][L]} 0/1, or null (all ones)
     * @param vocabSize the vocabulary size
     * @return a copy of the mask (all ones if null was given)
     * @throws PeftException naming the row and column that is wrong
     */
    static long[][] checkBatch(long[][] inputIds, long[][] attentionMask, int vocabSize) {
        int b = inputIds == null ? 0 : inputIds.length;
        int len = b == 0 || inputIds[0] == null ? 0 : inputIds[0].length;
        if (b == 0 || len == 0) {
            throw new PeftException("decode: input_ids must be a non-empty [B, L] batch");
        }
        if (attentionMask != null && attentionMask.length != b) {
            throw new PeftException("decode: attention_mask has " + attentionMask.length + " rows, input_ids " + b);
        }
        long[][] mask = new long[b][len];
        for (int r = 0; r < b; r++) {
            if (inputIds[r] == null || inputIds[r].length != len || (attentionMask != null
                    && (attentionMask[r] == null || attentionMask[r].length != len))) {
                throw new PeftException("decode: row " + r + " of input_ids / attention_mask has a different length than row 0 (" + len + ")");
            }
            for (int j = 0; j < len; j++) {
                long t = inputIds[r][j];
                if (t < 0 || t >= vocabSize) {
                    throw new PeftException("decode: input_ids[" + r + "][" + j + "] = " + t + " is outside the vocabulary [0, " + vocabSize + ")");
                }
                long m = attentionMask == null ? 1 : attentionMask[r][j];
                if (m != 0 && m != 1) {
                    throw new PeftException("decode: attention_mask[" + r + "][" + j + "] = " + m + ", expected 0 or 1");
                }
                mask[r][j] = m;
            }
            if (mask[r][len - 1] == 0) {
                throw new PeftException("decode: row " + r + " ends with padding; decoding needs LEFT padding (pad before the prompt)");
            }
        }
        return mask;
    }
}
