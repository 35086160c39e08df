package io.github.peft4j.peft;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;

/**
 * Config of a method that adds virtual tokens at the input (prompt tuning, P-tuning) or in the attention
 * keys and values (prefix tuning). The model-shape fields are filled from the model when absent, as HF
 * PEFT does.
 */
public abstract class PromptLearningConfig extends PeftConfig {
    /** HF's {@code num_virtual_tokens}. */
    protected Integer numVirtualTokens;
    /** HF's {@code token_dim}: the hidden size. */
    protected Integer tokenDim;
    /** HF's {@code num_transformer_submodules}: 1 for decoder-only and encoder models. */
    protected Integer numTransformerSubmodules;
    /** HF's {@code num_attention_heads}. */
    protected Integer numAttentionHeads;
    /** HF's {@code num_layers}. */
    protected Integer numLayers;

    /**
     * @param peftType the method's {@code peft_type}
     */
    protected PromptLearningConfig(String peftType) {
        super(peftType);
    }

    /** @return the number of virtual tokens */
    public int numVirtualTokens() {
        return numVirtualTokens;
    }

    /**
     * @param n the number of virtual tokens
     * @return this
     */
    public PromptLearningConfig numVirtualTokens(int n) {
        this.numVirtualTokens = n;
        return this;
    }

    /** @return the token dimension */
    public int tokenDim() {
        return tokenDim;
    }

    /** @return the number of layers */
    public int numLayers() {
        return numLayers;
    }

    /** @return the number of attention heads */
    public int numAttentionHeads() {
        return numAttentionHeads;
    }

    /**
     * Whether this config was read from a saved adapter: HF PEFT writes {@code inference_mode} true, and
     * prompt-learning adapters built from such a config hold the saved {@code prompt_embeddings} directly.
     *
     * @return {@code inference_mode}
     */
    public boolean isSaved() {
        return inferenceMode;
    }

    @Override
    public void validate(String where) {
        super.validate(where);
        if (numVirtualTokens != null && numVirtualTokens <= 0) {
            throw new PeftException(where + ": 'num_virtual_tokens' must be a positive integer, found " + numVirtualTokens);
        }
    }

    /**
     * Fills absent shape fields from the model and checks present ones against it (an adapter made for
     * another model fails here with the key named).
     *
     * @param model the base model
     * @param where the config's source, for messages
     */
    public void fitTo(TransformerModel model, String where) {
        if (numVirtualTokens == null || numVirtualTokens <= 0) {
            throw new PeftException(where + ": 'num_virtual_tokens' must be a positive integer, found " + numVirtualTokens);
        }
        tokenDim = fill(tokenDim, model.hiddenSize(), "token_dim", where);
        numLayers = fill(numLayers, model.numLayers(), "num_layers", where);
        numAttentionHeads = fill(numAttentionHeads, model.numAttentionHeads(), "num_attention_heads", where);
        numTransformerSubmodules = fill(numTransformerSubmodules, 1, "num_transformer_submodules", where);
    }

    private static Integer fill(Integer have, int model, String key, String where) {
        if (have == null) {
            return model;
        }
        if (have != model) {
            throw new PeftException(where + ": '" + key + "' is " + have + " but the model has " + model);
        }
        return have;
    }
}
