package io.github.peft4j.adapters.select;

import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.List;
import java.util.Map;

/**
 * Diff pruning, the learned mask ({@code peft_type: DIFF_PRUNING}, see {@link DiffPruningConfig},
 * {@link DiffPruningLayer} and {@link DiffPruningAdapter}).
 */
public final class DiffPruningMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public DiffPruningMethod() {}

    @Override
    public String peftType() {
        return DiffPruningConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return DiffPruningConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        DiffPruningConfig c = (DiffPruningConfig) config;
        List<String> paths = SparseMaskMethod.targets(context.model(), c, "DIFF_PRUNING", DiffPruningLayer.class);
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, DiffPruningLayer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public DiffPruningLayer wrap(String path, Module base, AdapterState state) {
                        return new DiffPruningLayer((Projection) base, state, path);
                    }

                    @Override
                    public void add(DiffPruningLayer layer, String path) {
                        layer.addAdapter(name, c.logAlphaInit(), path);
                    }
                });
        return new DiffPruningAdapter(name, c, context.model(), layers);
    }
}
