package io.github.peft4j.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.util.ArrayList;
import java.util.List;

/**
 * A prefix-tuning adapter: keys and values of {@code num_virtual_tokens} positions for every attention layer,
 * fed to the model as a {@link KvCache} (no rotary embedding is applied to them; the real tokens' positions
 * start at {@code n}).
 *
 * <p>The prefix is an encoder output {@code (n, L * 2 * kv_dim)} with {@code kv_dim = kv_heads * head_dim}
 * ({@code token_dim} after {@link PrefixTuningConfig#fitTo}), reshaped to {@code [n, 2L, kv_heads, head_dim]};
 * layer {@code i} takes row {@code 2i} as keys and {@code 2i + 1} as values, each {@code [B, kv_heads, n,
 * head_dim]} (HF's {@code view(B, n, 2L, heads, head_dim).permute(2, 0, 3, 1, 4).split(2)}).
 *
 * <p>Two forms, as HF PEFT's {@code PrefixEncoder}:
 * <ul>
 *   <li>plain: the encoder is one embedding {@code prompt_encoder.<adapter>.embedding.weight (n, L * 2 * kv_dim)};
 *   <li>projection ({@code prefix_projection} on a new adapter): {@code embedding (n, token_dim)} then
 *       {@code transform.0} Linear(token_dim, encoder_hidden_size), Tanh, {@code transform.2}
 *       Linear(encoder_hidden_size, L * 2 * kv_dim).
 * </ul>
 * Only the encoder output is saved ({@code prompt_embeddings}), so a projection adapter loaded from a directory
 * ({@code inference_mode} true in its config) is built in the plain form holding that output: it is exact for
 * inference, and {@code PeftModel.loadAdapter(dir, name, true)} trains that embedding directly instead of the
 * lost MLP (HF PEFT cannot resume training such an adapter at all).
 */
public final class PrefixTuningAdapter extends PromptEmbeddingAdapter {
    private final Param embedding;
    private final Param w0;
    private final Param b0;
    private final Param w2;
    private final Param b2;
    private final int layers;
    private final int kvHeads;
    private final int headDim;

    private PrefixTuningAdapter(String name, PrefixTuningConfig config, TransformerModel model) {
        super(name, config, model, new Shape(config.numVirtualTokens(), 2L * config.numLayers() * config.kvDim()));
        this.layers = config.numLayers();
        this.kvHeads = model.numKeyValueHeads();
        this.headDim = model.headDim();
        if (config.kvDim() != kvHeads * headDim) {
            throw new PeftException("prefix tuning: token_dim " + config.kvDim() + " is not kv_heads x head_dim = "
                    + kvHeads + " x " + headDim + " of the model");
        }
        int n = config.numVirtualTokens();
        long width = savedShape().get(1);
        if (config.prefixProjection() && !config.isSaved()) {
            long d = config.tokenDim();
            long h = config.encoderHiddenSize();
            embedding = register("embedding.weight", randomNormal(new Shape(n, d)));
            w0 = register("transform.0.weight", randomUniform(new Shape(h, d), d));
            b0 = register("transform.0.bias", randomUniform(new Shape(h), d));
            w2 = register("transform.2.weight", randomUniform(new Shape(width, h), h));
            b2 = register("transform.2.bias", randomUniform(new Shape(width), h));
        } else {
            embedding = register("embedding.weight", randomNormal(savedShape()));
            w0 = null;
            b0 = null;
            w2 = null;
            b2 = null;
        }
    }

    /**
     * Creates the adapter for a config already fitted to the model ({@link PrefixTuningConfig#fitTo}).
     *
     * @param name the adapter name
     * @param config the config
     * @param model the base model
     * @return the adapter, randomly initialised as HF PEFT's {@code PrefixEncoder}
     */
    public static PrefixTuningAdapter create(String name, PrefixTuningConfig config, TransformerModel model) {
        return new PrefixTuningAdapter(name, config, model);
    }

    /** @return whether this adapter computes its prefix through the projection MLP */
    public boolean hasProjection() {
        return w0 != null;
    }

    /** @return the embedding parameter: {@code (n, L * 2 * kv_dim)}, or {@code (n, token_dim)} with projection */
    public Param embedding() {
        return embedding;
    }

    /** @return {@code (n, L * 2 * kv_dim)} fp32: the embedding, or the MLP applied to it */
    @Override
    protected NDArray encoderOutput() {
        NDArray e = embedding.array();
        if (w0 == null) {
            return e;
        }
        NDArray hidden = ai.djl.nn.core.Linear.linear(e, w0.array(), b0.array()).head().tanh();
        return ai.djl.nn.core.Linear.linear(hidden, w2.array(), b2.array()).head();
    }

    @Override
    protected Param loadTarget() {
        if (w0 != null) {
            throw new PeftException("prefix-tuning adapter '" + name() + "' has a projection MLP, but a saved '" + KEY
                    + "' is the MLP's output: load saved adapters with PeftModel.loadAdapter (they come back in the plain form)");
        }
        return embedding;
    }

    /** @return null: prefix tuning changes the keys and values, not the input */
    @Override
    public NDArray inputEmbeddings(long batch) {
        return null;
    }

    /**
     * @param batch the batch size
     * @return per layer keys and values {@code [B, kv_heads, n, head_dim]} in the model's dtype, on the gradient path
     */
    @Override
    public KvCache prefix(long batch) {
        int n = numVirtualTokens();
        NDArray kv = toModelType(encoderOutput()).reshape(n, 2L * layers, kvHeads, headDim).transpose(1, 2, 0, 3);
        NDList rows = kv.split(2L * layers, 0); // 2L x [1, kv_heads, n, head_dim]
        Shape out = new Shape(batch, kvHeads, n, headDim);
        List<NDArray> keys = new ArrayList<>(layers);
        List<NDArray> values = new ArrayList<>(layers);
        for (int i = 0; i < layers; i++) {
            keys.add(rows.get(2 * i).broadcast(out));
            values.add(rows.get(2 * i + 1).broadcast(out));
        }
        return new KvCache(keys, values);
    }
}
