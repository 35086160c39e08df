package io.github.peft4j.generate;

import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;

/**
 * What {@link Generator} needs from a causal language model: its vocabulary size, its special token ids, and
 * {@link DecodeSession}s that turn tokens into next-token logits. Nothing here depends on
 * {@link TransformerModel}: a combination of other models (proxy-tuning) or a black-box model behind HTTP that
 * only returns logits implements it as well as {@link TransformerLm} does for a local model.
 */
public interface LanguageModel {

    /** @return the vocabulary size {@code V}: token ids are in {@code [0, V)} and logits rows have {@code V} entries */
    int vocabSize();

    /** @return the end-of-sequence ids (possibly several, possibly none) */
    int[] eosTokenIds();

    /** @return the padding id, or -1 if the model defines none */
    int padTokenId();

    /** @return the beginning-of-sequence id, or -1 if the model defines none */
    int bosTokenId();

    /**
     * Opens a session; its key/value cache and position bookkeeping live until {@link DecodeSession#close()}.
     *
     * @param context per-call settings attached to every forward call of the session (e.g. one adapter name per
     *     row); {@link CallContext#NONE} for none
     * @param useCache decode incrementally over a cache (false: every step recomputes the whole sequence; a model
     *     without a cache may ignore it)
     * @return a new session
     */
    DecodeSession open(CallContext context, boolean useCache);

    /** @return a session over the cache without per-call settings */
    default DecodeSession open() {
        return open(CallContext.NONE, true);
    }

    /**
     * @param peft a model with adapters; every forward goes through {@link PeftModel#forward}
     * @return the language model
     */
    static LanguageModel of(PeftModel peft) {
        return TransformerLm.of(peft);
    }

    /**
     * @param model a plain causal language model
     * @return the language model
     */
    static LanguageModel of(TransformerModel model) {
        return TransformerLm.of(model);
    }
}
