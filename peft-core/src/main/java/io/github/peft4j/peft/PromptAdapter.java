package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.model.KvCache;

/**
 * An adapter that works on the model's input: virtual-token embeddings prepended to the word embeddings
 * (prompt tuning, P-tuning) or keys and values prepended in every attention layer (prefix tuning).
 * {@link PeftModel} extends the attention mask (and token types, labels) to match.
 */
public interface PromptAdapter extends Adapter {
    /** @return the number of virtual positions added */
    int numVirtualTokens();

    /**
     * @param batch the batch size
     * @return embeddings {@code [B, n, hidden]} to prepend to the input embeddings, or null
     */
    NDArray inputEmbeddings(long batch);

    /**
     * @param batch the batch size
     * @return a key/value prefix of {@code n} positions for every layer, or null
     */
    KvCache prefix(long batch);
}
