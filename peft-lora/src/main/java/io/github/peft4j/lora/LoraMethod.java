package io.github.peft4j.lora;

import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.Layer;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import io.github.peft4j.peft.Targets;
import io.github.peft4j.peft.WeightedCombiner;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The LORA method: wraps every targeted linear or Conv1D layer in a {@link LoraLayer} and every targeted embedding
 * in a {@link LoraEmbeddingLayer}; {@code use_dora} makes the adapter DoRA on both. The adapter is a
 * {@link LoraAdapter}, which also saves the base embedding when HF PEFT does. It also combines adapters as HF PEFT's
 * {@code add_weighted_adapter} ({@link WeightedCombiner}, see {@link io.github.peft4j.lora.combine.Combination}).
 */
public final class LoraMethod implements PeftMethod, WeightedCombiner {
    private static final Logger LOG = LoggerFactory.getLogger(LoraMethod.class);
    private final WeightedCombiner combiner = io.github.peft4j.lora.combine.Combination.combiner();

    @Override
    public String peftType() {
        return "LORA";
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return LoraConfig.class;
    }

    @Override
    public PeftConfig combinedConfig(List<Adapter> sources, WeightedCombiner.Spec spec) {
        return combiner.combinedConfig(sources, spec);
    }

    @Override
    public void combineInto(Adapter target, List<Adapter> sources, double[] weights, WeightedCombiner.Spec spec) {
        combiner.combineInto(target, sources, weights, spec);
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        LoraConfig c = (LoraConfig) config;
        List<String> paths = Targets.select(context.model(), c, m -> m instanceof Projection || m instanceof Embedding,
                "linear, Conv1D and embedding layers");
        if (c.targetModules().isAllLinear()) {
            c.expandTargets(paths); // HF PEFT 0.21 saves all-linear as the expanded list of module paths
        }
        List<String> embeddings = paths.stream()
                .filter(p -> Targets.innermost(context.model().resolve(p)) instanceof Embedding).toList();
        List<String> projections = paths.stream().filter(p -> !embeddings.contains(p)).toList();
        Map<String, AdapterLayer> installed = new LinkedHashMap<>();
        installed.putAll(LayerAdapter.install(context, projections, LoraLayer.class, new LayerAdapter.Installer<>() {
            @Override
            public LoraLayer wrap(String path, Module base, AdapterState state) {
                Projection p = (Projection) base;
                if (p.dense() != null && p.dense().fanInFanOut() != c.fanInFanOut()) {
                    LOG.warn("{}: fan_in_fan_out={} in the config but the layer stores its weight {}; using the layer's layout",
                            path, c.fanInFanOut(), p.dense().fanInFanOut() ? "(in, out)" : "(out, in)");
                }
                return new LoraLayer(p, state);
            }

            @Override
            public void add(LoraLayer layer, String path) {
                layer.addAdapter(name, c.rankFor(path), c.scalingFor(path), c.loraDropout(), c.initLoraWeights(), c.useDora());
            }
        }));
        installed.putAll(LayerAdapter.install(context, embeddings, LoraEmbeddingLayer.class, new LayerAdapter.Installer<>() {
            @Override
            public LoraEmbeddingLayer wrap(String path, Module base, AdapterState state) {
                return new LoraEmbeddingLayer((Layer) base, state, paddingIdx(context.model(), path));
            }

            @Override
            public void add(LoraEmbeddingLayer layer, String path) {
                layer.addAdapter(name, c.rankFor(path), c.scalingFor(path), c.initLoraWeights(), c.useDora());
            }
        }));
        Map<String, AdapterLayer> layers = new LinkedHashMap<>();
        paths.forEach(p -> layers.put(p, installed.get(p)));
        return new LoraAdapter(name, c, context.model(), layers);
    }

    /**
     * The {@code padding_idx} transformers gives an embedding: {@code pad_token_id} on the word embeddings of Llama,
     * Mistral, Qwen2 and BERT (BertConfig's default is 0, the others' none); none on GPT-2's {@code wte} or on
     * position and token-type embeddings.
     */
    static int paddingIdx(TransformerModel model, String path) {
        String type = model.config().modelType();
        if (!path.equals(model.wordEmbeddingsPath()) || "gpt2".equals(type)) {
            return -1;
        }
        return model.config().integer("pad_token_id", "bert".equals(type) ? 0 : -1);
    }
}
