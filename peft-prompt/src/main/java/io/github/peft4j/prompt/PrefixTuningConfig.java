package io.github.peft4j.prompt;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PromptLearningConfig;
import java.util.List;

/**
 * Hugging Face PEFT's {@code PrefixTuningConfig} ({@code peft_type} {@code PREFIX_TUNING}): trainable keys and
 * values of {@code num_virtual_tokens} positions prepended in every attention layer.
 *
 * <p>Without {@code prefix_projection} the prefix is one embedding {@code (n, num_layers * 2 * token_dim)}; with
 * it, {@code Embedding(n, token_dim) -> Linear(token_dim, encoder_hidden_size) -> Tanh ->
 * Linear(encoder_hidden_size, num_layers * 2 * token_dim)}.
 *
 * <p>Grouped-query attention follows HF PEFT (its {@code _prepare_prompt_learning_config}, PEFT issue #1901):
 * when the model's config has {@code num_key_value_heads}, {@code token_dim} becomes the key/value width
 * {@code kv_heads * head_dim} and {@code num_attention_heads} becomes {@code kv_heads}, and that is what is
 * saved. A file written before that convention (hidden size and query heads) is accepted and converted.
 */
public class PrefixTuningConfig extends PromptLearningConfig {
    /** The {@code peft_type} of this method. */
    public static final String PEFT_TYPE = "PREFIX_TUNING";

    /** HF's {@code encoder_hidden_size}: the projection MLP's hidden size (default {@code token_dim}). */
    protected Integer encoderHiddenSize;
    /** HF's {@code prefix_projection}: whether the prefix goes through the MLP. */
    protected boolean prefixProjection;

    /** Creates a config with HF's defaults (no projection); set {@code num_virtual_tokens}. */
    public PrefixTuningConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code encoder_hidden_size}, or null before the config is fitted to a model */
    public Integer encoderHiddenSize() {
        return encoderHiddenSize;
    }

    /**
     * @param size the projection MLP's hidden size
     * @return this
     */
    public PrefixTuningConfig encoderHiddenSize(int size) {
        this.encoderHiddenSize = size;
        return this;
    }

    /** @return {@code prefix_projection} */
    public boolean prefixProjection() {
        return prefixProjection;
    }

    /**
     * @param on whether to reparameterise the prefix through the MLP
     * @return this
     */
    public PrefixTuningConfig prefixProjection(boolean on) {
        this.prefixProjection = on;
        return this;
    }

    @Override
    public PrefixTuningConfig numVirtualTokens(int n) {
        super.numVirtualTokens(n);
        return this;
    }

    @Override
    public PrefixTuningConfig taskType(TaskType task) {
        super.taskType(task);
        return this;
    }

    @Override
    public PrefixTuningConfig baseModelNameOrPath(String path) {
        super.baseModelNameOrPath(path);
        return this;
    }

    @Override
    public PrefixTuningConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }


    @Override
    public void validate(String where) {
        super.validate(where);
        if (encoderHiddenSize != null && encoderHiddenSize <= 0) {
            throw new PeftException(where + ": 'encoder_hidden_size' must be a positive integer, found " + encoderHiddenSize);
        }
    }

    /**
     * Fills and checks the shape fields as {@link PromptLearningConfig#fitTo} does, then applies HF's
     * grouped-query convention ({@code token_dim = kv_heads * head_dim}, {@code num_attention_heads = kv_heads}
     * when the model config has {@code num_key_value_heads}) and defaults {@code encoder_hidden_size} to
     * {@code token_dim}.
     *
     * @param model the base model
     * @param where the config's source, for messages
     */
    @Override
    public void fitTo(TransformerModel model, String where) {
        boolean kvKey = model.config().has("num_key_value_heads");
        int kvHeads = model.numKeyValueHeads();
        int kvDim = kvHeads * model.headDim();
        if (kvKey && tokenDim != null && numAttentionHeads != null && tokenDim == kvDim && numAttentionHeads == kvHeads) {
            // HF's GQA form: check the remaining fields against the model in the plain form, then convert back
            tokenDim = model.hiddenSize();
            numAttentionHeads = model.numAttentionHeads();
        }
        super.fitTo(model, where);
        if (kvKey) {
            tokenDim = kvDim;
            numAttentionHeads = kvHeads;
        }
        if (encoderHiddenSize == null) {
            encoderHiddenSize = tokenDim;
        }
    }

    /** @return the width of one layer's keys (or values): {@code token_dim}, after {@link #fitTo} */
    int kvDim() {
        return tokenDim;
    }
}
