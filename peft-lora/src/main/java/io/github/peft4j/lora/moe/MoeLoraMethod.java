package io.github.peft4j.lora.moe;

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
 * The MOE_LORA method: wraps every targeted linear or Conv1D layer in a {@link MoeLoraLayer} holding
 * {@code num_experts} LoRA experts and a router, and returns a {@link MoeLoraAdapter}, whose training hook adds the
 * load-balancing loss. {@code target_modules} is required ({@code all-linear} is saved as the expanded list).
 */
public final class MoeLoraMethod implements PeftMethod {
    @Override
    public String peftType() {
        return MoeLoraConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return MoeLoraConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        MoeLoraConfig c = (MoeLoraConfig) config;
        List<String> paths = Targets.select(context.model(), c, m -> m instanceof Projection, "linear and Conv1D layers");
        if (c.targetModules().isAllLinear()) {
            c.expandTargets(paths);
        }
        boolean zeroB = !Boolean.FALSE.equals(c.initLoraWeights());
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, MoeLoraLayer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public MoeLoraLayer wrap(String path, Module base, AdapterState state) {
                        return new MoeLoraLayer((Projection) base, state);
                    }

                    @Override
                    public void add(MoeLoraLayer layer, String path) {
                        layer.addAdapter(name, c.numExperts(), c.topK(), c.r(), c.scaling(), c.loraDropout(), zeroB);
                    }
                });
        return new MoeLoraAdapter(name, c, context.model(), layers);
    }
}
