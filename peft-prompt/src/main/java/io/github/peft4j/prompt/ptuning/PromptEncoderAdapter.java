package io.github.peft4j.prompt.ptuning;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.prompt.PromptEmbeddingAdapter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A P-tuning adapter (HF PEFT's {@code PromptEncoder}): the virtual-token embeddings {@code (n, token_dim)} are the
 * output of a trainable encoder applied to a trainable embedding table, broadcast over the batch and prepended to
 * the input embeddings by {@link io.github.peft4j.peft.PeftModel} (as prompt tuning: the mask grows by {@code n},
 * token types get zeros, causal-LM logits get {@code n} virtual positions first).
 *
 * <p>Parameters, under HF's in-memory names {@code prompt_encoder.<adapter>.*}, fp32:
 * <ul>
 *   <li>{@code embedding.weight (n, d)}, N(0, 1);
 *   <li>MLP: {@code mlp_head.0} Linear(d, h), ReLU, {@code mlp_head.2} Linear(h, h), ReLU, {@code mlp_head.4}
 *       Linear(h, d);
 *   <li>LSTM: {@code lstm_head.weight_ih_l<k>[_reverse]}, {@code weight_hh_l<k>[_reverse]}, {@code bias_ih_...},
 *       {@code bias_hh_...} (torch.nn.LSTM's names and shapes, bidirectional, {@code encoder_num_layers} layers,
 *       hidden h), then {@code mlp_head.0} Linear(2h, 2h), ReLU, {@code mlp_head.2} Linear(2h, d).
 * </ul>
 * Initialisation as torch's modules: linear weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LSTM weights and
 * biases U(-1/sqrt(h), 1/sqrt(h)).
 *
 * <p>Only the encoder's output is saved ({@code prompt_embeddings (n, d)}), as HF PEFT does. An adapter loaded from a
 * directory ({@code inference_mode} true in its config) is therefore built in the plain form: one embedding holding
 * that output, exact for inference (HF PEFT's inference-mode {@code PromptEncoder} is the same fixed table);
 * {@code PeftModel.loadAdapter(dir, name, true)} trains that table directly, the encoder being lost.
 */
public final class PromptEncoderAdapter extends PromptEmbeddingAdapter {
    private final PromptEncoderConfig config;
    private final Param embedding;
    private final List<Param> mlp = new ArrayList<>(); // weight, bias pairs in order
    private final List<Param[][]> lstmLayers = new ArrayList<>(); // [layer][direction][w_ih, w_hh, b_ih, b_hh]
    private final boolean encoder;

    private PromptEncoderAdapter(String name, PromptEncoderConfig config, TransformerModel model) {
        super(name, config, model, new Shape(config.numVirtualTokens(), config.tokenDim()));
        this.config = config;
        int n = config.numVirtualTokens();
        long d = config.tokenDim();
        long h = config.encoderHiddenSize();
        this.embedding = register("embedding.weight", randomNormal(new Shape(n, d)));
        this.encoder = !config.isSaved();
        if (!encoder) {
            return;
        }
        if (config.isLstm()) {
            long in = d;
            for (int l = 0; l < config.encoderNumLayers(); l++) {
                Param[][] dirs = new Param[2][];
                for (int r = 0; r < 2; r++) {
                    String suffix = "_l" + l + (r == 1 ? "_reverse" : "");
                    dirs[r] = new Param[] {
                        lstm("weight_ih" + suffix, new Shape(4 * h, in), h),
                        lstm("weight_hh" + suffix, new Shape(4 * h, h), h),
                        lstm("bias_ih" + suffix, new Shape(4 * h), h),
                        lstm("bias_hh" + suffix, new Shape(4 * h), h)};
                }
                lstmLayers.add(dirs);
                in = 2 * h;
            }
            linear("mlp_head.0", 2 * h, 2 * h);
            linear("mlp_head.2", 2 * h, d);
        } else {
            linear("mlp_head.0", d, h);
            linear("mlp_head.2", h, h);
            linear("mlp_head.4", h, d);
        }
    }

    private Param lstm(String local, Shape shape, long hidden) {
        return register("lstm_head." + local, randomUniform(shape, hidden));
    }

    private void linear(String prefix, long in, long out) {
        mlp.add(register(prefix + ".weight", randomUniform(new Shape(out, in), in)));
        mlp.add(register(prefix + ".bias", randomUniform(new Shape(out), in)));
    }

    /**
     * Creates the adapter for a config already fitted to the model ({@link PromptEncoderConfig#fitTo}).
     *
     * @param name the adapter name
     * @param config the config
     * @param model the base model
     * @return the adapter, randomly initialised as HF PEFT's {@code PromptEncoder} (or, for a saved config, the plain
     *     table that the saved {@code prompt_embeddings} fill)
     */
    public static PromptEncoderAdapter create(String name, PromptEncoderConfig config, TransformerModel model) {
        return new PromptEncoderAdapter(name, config, model);
    }

    /** @return whether the virtual tokens are computed by the encoder (false: a loaded, fixed table) */
    public boolean hasEncoder() {
        return encoder;
    }

    /** @return the embedding table {@code (n, token_dim)}: the encoder's input, or the loaded prompt itself */
    public Param embedding() {
        return embedding;
    }

    /**
     * @return {@code (n, token_dim)} fp32: the encoder applied to the embedding table (or the table itself), with
     *     the LSTM's dropout while the model is training
     */
    @Override
    protected NDArray encoderOutput() {
        return encode(model().isTraining());
    }

    /**
     * The saved tensor is the encoder's output without dropout, whatever mode the model is in (HF PEFT computes it
     * in the current mode, so a save during training with {@code encoder_dropout > 0} would store one random draw).
     *
     * @return {@code {"prompt_embeddings": (n, token_dim)}}
     */
    @Override
    public Map<String, NDArray> stateDict() {
        return Map.of(KEY, encode(false));
    }

    private NDArray encode(boolean training) {
        NDArray x = embedding.array();
        if (!encoder) {
            return x;
        }
        if (!lstmLayers.isEmpty()) {
            List<Lstm.Direction[]> layers = new ArrayList<>(lstmLayers.size());
            for (Param[][] layer : lstmLayers) {
                Lstm.Direction[] dirs = new Lstm.Direction[2];
                for (int r = 0; r < 2; r++) {
                    Param[] p = layer[r];
                    dirs[r] = new Lstm.Direction(p[0].array(), p[1].array(), p[2].array(), p[3].array());
                }
                layers.add(dirs);
            }
            x = Lstm.forward(x, layers, (float) config.encoderDropout(), training);
        }
        for (int i = 0; i < mlp.size(); i += 2) {
            x = Linear.linear(x, mlp.get(i).array(), mlp.get(i + 1).array()).head();
            if (i + 2 < mlp.size()) {
                x = ai.djl.nn.Activation.relu(x);
            }
        }
        return x;
    }

    @Override
    protected Param loadTarget() {
        if (encoder) {
            throw new PeftException("P-tuning adapter '" + name() + "' has an " + config.encoderReparameterizationType()
                    + " encoder, but a saved '" + KEY + "' is the encoder's output: load saved adapters with "
                    + "PeftModel.loadAdapter (they come back as a fixed table)");
        }
        return embedding;
    }

    /**
     * @param batch the batch size
     * @return the encoder output broadcast to {@code [B, n, token_dim]} in the model's dtype, on the gradient path
     */
    @Override
    public NDArray inputEmbeddings(long batch) {
        NDArray w = toModelType(encoderOutput()); // (n, d), computed once for the batch (HF: prompt_tokens[:1])
        return w.expandDims(0).broadcast(new Shape(batch, w.getShape().get(0), w.getShape().get(1)));
    }

    /** @return null: P-tuning adds no key/value prefix */
    @Override
    public KvCache prefix(long batch) {
        return null;
    }
}
