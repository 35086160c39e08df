package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;

/**
 * The inputs of a forward pass, as transformers names them. Exactly one of {@code inputIds} and
 * {@code inputsEmbeds} is set. {@code attentionMask} covers the cached positions and the new ones
 * ({@code [B, past + S]}), 1 for real tokens and 0 for padding.
 *
 * @param inputIds {@code [B, S]} int64 token ids, or null
 * @param inputsEmbeds {@code [B, S, hidden]}, or null
 * @param attentionMask {@code [B, past + S]} or null (all ones)
 * @param tokenTypeIds {@code [B, S]} (BERT segments) or null (zeros)
 * @param positionIds {@code [B, S]} or null ({@code past .. past + S - 1})
 * @param past cached keys and values (incremental decoding, prefix tuning), or null
 * @param useCache whether to return the keys and values including the new positions
 * @param context per-call settings read by layers (which adapter each row uses); never null
 */
public record ModelInput(NDArray inputIds, NDArray inputsEmbeds, NDArray attentionMask, NDArray tokenTypeIds,
        NDArray positionIds, KvCache past, boolean useCache, CallContext context) {

    /** Checks that exactly one of ids and embeddings is given and that row adapters match the batch. */
    public ModelInput {
        if ((inputIds == null) == (inputsEmbeds == null)) {
            throw new IllegalArgumentException("exactly one of inputIds and inputsEmbeds must be given");
        }
        context = context == null ? CallContext.NONE : context;
        long rows = (inputIds != null ? inputIds : inputsEmbeds).getShape().get(0);
        if (context.rowAdapters() != null && context.rowAdapters().size() != rows) {
            throw new IllegalArgumentException("row adapters: expected one name per batch row (" + rows + "), got "
                    + context.rowAdapters().size() + " " + context.rowAdapters());
        }
    }

    /**
     * An input without per-call settings.
     *
     * @param inputIds {@code [B, S]} int64 token ids, or null
     * @param inputsEmbeds {@code [B, S, hidden]}, or null
     * @param attentionMask {@code [B, past + S]} or null
     * @param tokenTypeIds {@code [B, S]} or null
     * @param positionIds {@code [B, S]} or null
     * @param past cached keys and values, or null
     * @param useCache whether to return the cache
     */
    public ModelInput(NDArray inputIds, NDArray inputsEmbeds, NDArray attentionMask, NDArray tokenTypeIds,
            NDArray positionIds, KvCache past, boolean useCache) {
        this(inputIds, inputsEmbeds, attentionMask, tokenTypeIds, positionIds, past, useCache, CallContext.NONE);
    }

    /**
     * @param ctx the per-call settings
     * @return a copy with that context
     */
    public ModelInput withContext(CallContext ctx) {
        return new ModelInput(inputIds, inputsEmbeds, attentionMask, tokenTypeIds, positionIds, past, useCache, ctx);
    }

    /**
     * @param names one adapter name per row ({@link CallContext#BASE} for the base model)
     * @return a copy whose rows run with those adapters (HF PEFT's {@code adapter_names=})
     */
    public ModelInput withRowAdapters(java.util.List<String> names) {
        return withContext(CallContext.rowAdapters(names));
    }

    /**
     * Token ids with an optional mask.
     *
     * @param inputIds {@code [B, S]} int64
     * @param attentionMask {@code [B, S]} or null
     * @return the input
     */
    public static ModelInput of(NDArray inputIds, NDArray attentionMask) {
        return new ModelInput(inputIds, null, attentionMask, null, null, null, false);
    }

    /** @return batch size */
    public long batchSize() {
        return (inputIds != null ? inputIds : inputsEmbeds).getShape().get(0);
    }

    /** @return number of new positions */
    public long seqLen() {
        return (inputIds != null ? inputIds : inputsEmbeds).getShape().get(1);
    }

    /** @return the number of cached positions */
    public long pastLength() {
        return past == null ? 0 : past.length();
    }

    /**
     * @param embeds the new input embeddings
     * @param mask the new attention mask
     * @param types the new token types
     * @return a copy with embeddings instead of ids
     */
    public ModelInput withEmbeds(NDArray embeds, NDArray mask, NDArray types) {
        return new ModelInput(null, embeds, mask, types, positionIds, past, useCache, context);
    }

    /**
     * @param cache the cache
     * @param mask the attention mask covering cache and new positions
     * @return a copy with a past
     */
    public ModelInput withPast(KvCache cache, NDArray mask) {
        return new ModelInput(inputIds, inputsEmbeds, mask, tokenTypeIds, positionIds, cache, useCache, context);
    }

    /**
     * @param on whether to return the cache
     * @return a copy with that setting
     */
    public ModelInput withUseCache(boolean on) {
        return new ModelInput(inputIds, inputsEmbeds, attentionMask, tokenTypeIds, positionIds, past, on, context);
    }
}
