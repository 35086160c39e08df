package io.github.peft4j.lora;

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
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The LORA method: wraps every targeted linear or Conv1D layer in a {@link LoraLayer}. */
public final class LoraMethod implements PeftMethod {
    private static final Logger LOG = LoggerFactory.getLogger(LoraMethod.class);

    @Override
    public String peftType() {
        return "LORA";
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return LoraConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        LoraConfig c = (LoraConfig) config;
        List<String> paths = Targets.select(context.model(), c, m -> m instanceof Projection, "linear and Conv1D layers");
        if (c.targetModules().isAllLinear()) {
            c.expandTargets(paths); // HF PEFT 0.21 saves all-linear as the expanded list of module paths
        }
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, LoraLayer.class,
                new LayerAdapter.Installer<>() {
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
                        layer.addAdapter(name, c.rankFor(path), c.scalingFor(path), c.loraDropout(), c.initLoraWeights());
                    }
                });
        return new LayerAdapter(name, c, context.model(), layers, LayerAdapter.TUNER_PREFIX);
    }
}
