package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;

/**
 * The input-side capability: an adapter that works on the model's input, virtual-token embeddings prepended to
 * the word embeddings (prompt tuning, P-tuning) or keys and values prepended in every attention layer (prefix
 * tuning). {@link PeftModel#forward} lets every active adapter with this capability {@link #prepare} the input;
 * the default extends the attention mask and token types to match. At most one can be active at a time (their
 * virtual positions would collide).
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

    /**
     * Rewrites a forward call's input: on a call without a cache, prepends the virtual tokens (embeddings, and
     * zeros to the token types) or the key/value prefix, and widens the attention mask by {@link
     * #numVirtualTokens} ones. A call with a cache (a later decoding step) is returned unchanged: the virtual
     * positions are in the cache and the caller's mask already covers them.
     *
     * @param input the caller's input
     * @param model the model it runs on
     * @return the input the model runs
     */
    default ModelInput prepare(ModelInput input, TransformerModel model) {
        if (input.past() != null) {
            return input;
        }
        long b = input.batchSize();
        int n = numVirtualTokens();
        NDManager m = model.manager();
        NDArray mask = input.attentionMask() == null ? null : onDevice(input.attentionMask(), model);
        NDArray prefixOnes = m.ones(new Shape(b, n), mask == null ? DataType.INT64 : mask.getDataType());
        KvCache past = prefix(b);
        if (past != null) {
            long s = input.seqLen();
            NDArray full = prefixOnes.concat(mask != null ? mask : m.ones(new Shape(b, s), prefixOnes.getDataType()), 1);
            return input.withPast(past, full);
        }
        NDArray virtual = inputEmbeddings(b);
        NDArray embeds = input.inputsEmbeds() != null ? onDevice(input.inputsEmbeds(), model)
                : model.embed(onDevice(input.inputIds(), model));
        NDArray newMask = mask == null ? null : prefixOnes.concat(mask, 1);
        NDArray types = input.tokenTypeIds() == null ? null
                : m.zeros(new Shape(b, n), input.tokenTypeIds().getDataType()).concat(onDevice(input.tokenTypeIds(), model), 1);
        NDArray cast = io.github.peft4j.nn.Ops.cast(virtual, embeds.getDataType()); // on the gradient path
        return input.withEmbeds(cast.concat(embeds, 1), newMask, types);
    }

    private static NDArray onDevice(NDArray a, TransformerModel model) {
        return a.getDevice().equals(model.device()) ? a : a.toDevice(model.device(), false);
    }
}
