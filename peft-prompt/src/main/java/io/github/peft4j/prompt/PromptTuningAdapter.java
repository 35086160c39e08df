package io.github.peft4j.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.util.Arrays;

/**
 * A prompt-tuning adapter: one trainable parameter {@code prompt_encoder.<adapter>.embedding.weight}
 * {@code (num_virtual_tokens, token_dim)}, broadcast over the batch and prepended to the input embeddings by
 * {@link io.github.peft4j.peft.PeftModel}. Saved as {@code prompt_embeddings} (the same values).
 */
public final class PromptTuningAdapter extends PromptEmbeddingAdapter {
    private final Param embedding;

    private PromptTuningAdapter(String name, PromptTuningConfig config, TransformerModel model) {
        super(name, config, model, new Shape(config.numVirtualTokens(), config.tokenDim()));
        this.embedding = register("embedding.weight", init(config, model, savedShape()));
    }

    /**
     * Creates the adapter for a config already fitted to the model ({@link PromptTuningConfig#fitTo}).
     *
     * @param name the adapter name
     * @param config the config
     * @param model the base model
     * @return the adapter, initialised as {@code prompt_tuning_init} prescribes
     */
    public static PromptTuningAdapter create(String name, PromptTuningConfig config, TransformerModel model) {
        return new PromptTuningAdapter(name, config, model);
    }

    private NDArray init(PromptTuningConfig config, TransformerModel model, Shape shape) {
        if (!PromptTuningConfig.TEXT.equals(config.promptTuningInit())) {
            return randomNormal(shape);
        }
        long[] ids = config.initTokenIds();
        if (ids == null) {
            if (config.isSaved()) {
                // a saved adapter being loaded: its prompt_embeddings replace these values right away
                NDArray z = model.manager().zeros(shape, DataType.FLOAT32);
                NDScope.unregister(z);
                return z;
            }
            throw new PeftException("prompt_tuning_init TEXT needs token ids: set 'init_token_ids' with "
                    + "PromptTuningConfig.initTokenIds(...) (the ids of prompt_tuning_init_text "
                    + (config.promptTuningInitText() == null ? "" : "\"" + config.promptTuningInitText() + "\" ")
                    + "under tokenizer " + config.tokenizerNameOrPath() + ")");
        }
        long[] fitted = fitTokenIds(ids, config.numVirtualTokens());
        int vocab = model.vocabSize();
        for (long id : fitted) {
            if (id < 0 || id >= vocab) {
                throw new PeftException("'init_token_ids' holds id " + id + " outside the vocabulary [0, " + vocab + ")");
            }
        }
        NDArray w;
        try (NDScope scope = new NDScope()) {
            NDArray idArray = io.github.peft4j.nn.Ops.owned(model.manager(), fitted, new Shape(1, fitted.length));
            // [1, n, hidden] through the model's current word-embedding slot, as HF's word_embeddings(ids)
            w = model.embed(idArray).reshape(shape).toType(DataType.FLOAT32, true);
            w.attach(model.manager());
            NDScope.unregister(w);
        }
        return w;
    }

    /**
     * HF PEFT's repeat-or-cut of the init text's ids to the number of virtual tokens: longer lists are cut,
     * shorter ones repeated {@code ceil(n / len)} times and then cut.
     *
     * @param ids the token ids (at least one)
     * @param n the number of virtual tokens
     * @return exactly {@code n} ids
     */
    static long[] fitTokenIds(long[] ids, int n) {
        if (ids.length == 0) {
            throw new PeftException("'init_token_ids' is empty");
        }
        if (ids.length >= n) {
            return Arrays.copyOf(ids, n);
        }
        long[] out = new long[n]; // ids * ceil(n / len), cut to n
        for (int i = 0; i < n; i++) {
            out[i] = ids[i % ids.length];
        }
        return out;
    }

    /** @return the prompt parameter {@code (num_virtual_tokens, token_dim)} */
    public Param embedding() {
        return embedding;
    }

    @Override
    protected NDArray encoderOutput() {
        return embedding.array();
    }

    @Override
    protected Param loadTarget() {
        return embedding;
    }

    /**
     * @param batch the batch size
     * @return the prompt broadcast to {@code [B, n, token_dim]} in the model's dtype, on the gradient path
     */
    @Override
    public NDArray inputEmbeddings(long batch) {
        NDArray w = toModelType(embedding.array()); // (n, d)
        return w.expandDims(0).broadcast(new Shape(batch, w.getShape().get(0), w.getShape().get(1)));
    }

    /** @return null: prompt tuning adds no key/value prefix */
    @Override
    public KvCache prefix(long batch) {
        return null;
    }
}
