package io.github.peft4j.lora;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.ModuleSpec;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * A LoRA adapter: its layers' tensors, plus the base embeddings HF PEFT 0.21 writes next to them. With
 * {@code save_embedding_layers="auto"} HF saves the input and output embeddings when an embedding layer is targeted:
 * {@code target_modules} names {@code embed_tokens} or {@code lm_head} (a list entry equal to one of them, or a regex
 * matching a module whose name ends with one), and then only those of the two that a LoRA layer wraps, under
 * {@code <path>.base_layer.weight} (e.g. {@code base_model.model.model.embed_tokens.base_layer.weight}). GPT-2's
 * {@code wte} and BERT's {@code word_embeddings} are not such names, so their base weights are not saved. Loading
 * copies a saved base embedding into the model, as HF's loader does; a file without it loads too.
 */
public final class LoraAdapter extends LayerAdapter {
    /** HF PEFT's {@code EMBEDDING_LAYER_NAMES}. */
    static final Set<String> EMBEDDING_LAYER_NAMES = Set.of("embed_tokens", "lm_head");
    private final LoraConfig config;
    private final TransformerModel model;

    /**
     * @param name the adapter name
     * @param config its resolved config
     * @param model the model
     * @param layers module path to wrapper
     */
    public LoraAdapter(String name, LoraConfig config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
        this.config = config;
        this.model = model;
    }

    /**
     * HF's {@code set_scale(adapter, scale)} on every layer of this adapter: its scaling becomes
     * {@code scale · lora_alpha / r} (rsLoRA: {@code / sqrt(r)}; per-module rank and alpha patterns apply), for the
     * forward pass, DoRA's weight norm and a later merge. 1 restores the config's scale. See {@link Scalable}.
     *
     * @param scale the factor on the config's scale
     * @throws PeftException when the adapter is merged (HF changes the scale then, and its unmerge subtracts the new
     *     scale's update from a weight that holds the old one)
     */
    public void setScale(double scale) {
        if (isMerged()) {
            throw new PeftException(Scalable.mergedError(name()));
        }
        layers().values().forEach(l -> ((Scalable) l).setScale(name(), scale));
    }

    /** @return whether HF's {@code save_embedding_layers="auto"} saves the embeddings for this config */
    private boolean embeddingTargeted() {
        ModuleSpec spec = config.targetModules();
        if (spec == null || spec.isAllLinear()) {
            return false;
        }
        if (spec.isRegex()) {
            Pattern leaf = Pattern.compile("(.*\\.)?(" + String.join("|", EMBEDDING_LAYER_NAMES) + ")");
            return model.modules().keySet().stream().anyMatch(p -> leaf.matcher(p).matches() && spec.matches(p));
        }
        return spec.nameList().stream().anyMatch(EMBEDDING_LAYER_NAMES::contains);
    }

    /** Saved key to base weight of the input and output embeddings that a LoRA layer wraps (when HF saves them). */
    private Map<String, Param> baseEmbeddings() {
        Map<String, Param> out = new LinkedHashMap<>();
        if (!embeddingTargeted()) {
            return out;
        }
        for (String path : List.of(model.wordEmbeddingsPath(), "lm_head")) {
            Module slot = model.modules().get(path);
            if (slot instanceof LoraEmbeddingLayer || slot instanceof LoraLayer) {
                Module b = ((AdapterLayer) slot).baseModule();
                Param w = b instanceof Embedding e ? e.weight() : b instanceof Linear l ? l.weight() : null;
                if (w != null) {
                    out.put(TUNER_PREFIX + path + ".base_layer.weight", w);
                }
            }
        }
        return out;
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = super.stateDict();
        baseEmbeddings().forEach((k, p) -> out.put(k, p.array()));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        Map<String, NDArray> rest = new LinkedHashMap<>(tensors);
        Map<String, Param> bases = baseEmbeddings();
        for (Map.Entry<String, Param> e : bases.entrySet()) {
            NDArray t = rest.remove(e.getKey());
            if (t == null) {
                continue;
            }
            NDArray w = e.getValue().array();
            if (!t.getShape().equals(w.getShape())) {
                throw new PeftException(source + ": tensor '" + e.getKey() + "' has shape " + t.getShape()
                        + ", the model's embedding is " + w.getShape());
            }
            // in place: a tied head reads this very array
            t.toType(w.getDataType(), false).toDevice(w.getDevice(), false).copyTo(w);
        }
        super.loadStateDict(rest, source);
    }
}
