package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.List;
import java.util.Map;

/**
 * The fixed sparse mask ({@code peft_type: SPARSE_MASK}, see {@link SparseMaskConfig} and {@link SparseMaskLayer}).
 */
public final class SparseMaskMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public SparseMaskMethod() {}

    @Override
    public String peftType() {
        return SparseMaskConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return SparseMaskConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        SparseMaskConfig c = (SparseMaskConfig) config;
        TransformerModel model = context.model();
        List<String> paths = targets(model, c, "SPARSE_MASK", SparseMaskLayer.class);
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, SparseMaskLayer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public SparseMaskLayer wrap(String path, Module base, AdapterState state) {
                        return new SparseMaskLayer((Projection) base, state, path);
                    }

                    @Override
                    public void add(SparseMaskLayer layer, String path) {
                        long numel = layer.projection().dense().weight().shape().size();
                        layer.addAdapter(name, c.count(numel), "largest".equals(c.criterion()), path);
                    }
                });
        return new SparseMaskAdapter(name, c, model, layers);
    }

    /**
     * The target projections of a masked method: {@code all-linear} when {@code target_modules} is absent; a target
     * already wrapped by another method's layer is refused before anything is installed.
     *
     * @param model the model
     * @param c the config (absent targets are resolved into it)
     * @param method the method, for messages
     * @param own the method's layer class (a slot it already wraps takes another adapter)
     * @return the paths
     */
    static List<String> targets(TransformerModel model, io.github.peft4j.peft.TargetedConfig c, String method,
            Class<? extends AdapterLayer> own) {
        if (c.targetModules() == null) {
            c.targetModules(ModuleSpec.allLinear());
        }
        List<String> paths = Selection.modules(model, c, m -> m instanceof Projection && ((Projection) m).dense() != null,
                "linear and Conv1D layers with dense weights");
        for (String path : paths) {
            Module current = model.resolve(path);
            if (current instanceof AdapterLayer && !own.isInstance(current)) {
                throw new PeftException(method + ": module '" + path + "' is already adapted by "
                        + current.getClass().getSimpleName() + "; one method per module (delete that adapter first)");
            }
        }
        return paths;
    }
}
