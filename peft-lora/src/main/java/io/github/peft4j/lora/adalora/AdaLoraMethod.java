package io.github.peft4j.lora.adalora;

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
import java.util.List;
import java.util.Map;

/**
 * The ADALORA method (HF PEFT 0.21 {@code tuners/adalora}): wraps every targeted linear or Conv1D layer in an
 * {@link AdaLoraLayer} at rank {@code init_r} and returns an {@link AdaLoraAdapter}, whose training hooks add the
 * orthogonal regulariser and run the rank allocator. Without {@code target_modules} HF's per-model defaults apply
 * (llama, qwen2: {@code q_proj, v_proj}; gpt2: {@code c_attn}; bert: {@code query, value}).
 */
public final class AdaLoraMethod implements PeftMethod {
    @Override
    public String peftType() {
        return "ADALORA";
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return AdaLoraConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        AdaLoraConfig c = (AdaLoraConfig) config;
        c.defaultTargets(context.model().config().modelType());
        List<String> paths = Targets.select(context.model(), c, m -> m instanceof Projection, "linear and Conv1D layers");
        if (c.targetModules().isAllLinear()) {
            c.expandTargets(paths); // saved, as HF PEFT 0.21 does, as the expanded list of module paths
        }
        if (c.rankPattern() != null) { // checked before any module is wrapped
            AdaLoraAdapter.parsePattern(c.rankPattern(), new java.util.HashSet<>(paths), c.initR(), name, context.source());
        }
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, AdaLoraLayer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public AdaLoraLayer wrap(String path, Module base, AdapterState state) {
                        return new AdaLoraLayer((Projection) base, state);
                    }

                    @Override
                    public void add(AdaLoraLayer layer, String path) {
                        layer.addAdapter(name, c.initR(), c.scalingNumerator(), c.loraDropout(), c.initLoraWeights());
                    }
                });
        return new AdaLoraAdapter(name, c, context.model(), layers);
    }
}
