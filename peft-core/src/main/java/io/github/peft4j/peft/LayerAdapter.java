package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * An adapter made of {@link AdapterLayer}s in model slots (LoRA, IA3, modules_to_save copies). It implements
 * naming, saving, loading, merging and removal once for every such method. Wrappers of different methods compose
 * on one slot: a new method's wrapper goes around the one already there (HF PEFT's nesting of {@code base_layer}).
 */
public class LayerAdapter implements Adapter, Mergeable, RowRouted {
    /** Key prefix of tuner adapters in HF PEFT files. */
    public static final String TUNER_PREFIX = "base_model.model.";
    private final String name;
    private final PeftConfig config;
    private final TransformerModel model;
    private final Map<String, AdapterLayer> layers;
    private final String keyPrefix;
    /** Layers whose merge was taken out while this adapter is inactive, to fold back in when it is active again. */
    private final List<AdapterLayer> suspended = new ArrayList<>();

    /**
     * @param name the adapter name
     * @param config its config
     * @param model the model the layers live in
     * @param layers module path to the wrapper holding this adapter there
     * @param keyPrefix prefix of saved keys ({@link #TUNER_PREFIX}, or {@code base_model.} for the classifier
     *     copies of prompt-learning adapters)
     */
    public LayerAdapter(String name, PeftConfig config, TransformerModel model, Map<String, AdapterLayer> layers,
            String keyPrefix) {
        this.name = name;
        this.config = config;
        this.model = model;
        this.layers = new LinkedHashMap<>(layers);
        this.keyPrefix = keyPrefix;
    }

    /**
     * Wraps (or extends the existing wrappers of) every target module.
     *
     * @param context the model and state
     * @param paths module paths chosen by {@link Targets}
     * @param wrapperType the method's wrapper class
     * @param installer creates wrappers and adds the adapter to them
     * @param <W> the wrapper type
     * @return path to wrapper
     */
    public static <W extends AdapterLayer> Map<String, AdapterLayer> install(AdapterContext context, List<String> paths,
            Class<W> wrapperType, Installer<W> installer) {
        Map<String, AdapterLayer> out = new LinkedHashMap<>();
        for (String path : paths) {
            Module current = context.model().resolve(path);
            W layer = find(current, wrapperType);
            if (layer == null) { // wrap whatever is in the slot now, another method's wrapper included
                layer = installer.wrap(path, current, context.state());
                parentOf(context.model(), path).replace(leaf(path), layer);
            }
            installer.add(layer, path);
            out.put(path, layer);
        }
        return out;
    }

    /** Creates a wrapper for a module and adds an adapter to a wrapper. */
    public interface Installer<W extends AdapterLayer> {
        /**
         * @param path the module path
         * @param base the module in the slot now
         * @param state the shared state
         * @return a wrapper around it
         */
        W wrap(String path, Module base, AdapterState state);

        /**
         * @param layer the wrapper
         * @param path its path
         */
        void add(W layer, String path);
    }

    /** The wrapper of a type in the chain of wrappers at a slot, or null. */
    private static <W extends AdapterLayer> W find(Module slot, Class<W> type) {
        for (Module m = slot; m instanceof AdapterLayer a; m = a.baseModule()) {
            if (type.isInstance(m)) {
                return type.cast(m);
            }
        }
        return null;
    }

    /** Takes an empty wrapper out of the chain at a slot, giving its place to what it wrapped. */
    private static void unwrap(Module root, String path, AdapterLayer layer) {
        Module slot = root.resolve(path);
        if (slot == layer) {
            parentOf(root, path).replace(leaf(path), layer.baseModule());
            return;
        }
        for (Module m = slot; m instanceof AdapterLayer outer; m = outer.baseModule()) {
            if (outer.baseModule() == layer) {
                outer.replaceBase(layer.baseModule());
                return;
            }
        }
        throw new PeftException("module '" + path + "': the wrapper to remove is no longer in the model");
    }

    static Module parentOf(Module root, String path) {
        int dot = path.lastIndexOf('.');
        return dot < 0 ? root : root.resolve(path.substring(0, dot));
    }

    static String leaf(String path) {
        return path.substring(path.lastIndexOf('.') + 1);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PeftConfig config() {
        return config;
    }

    /** @return module path to wrapper */
    public Map<String, AdapterLayer> layers() {
        return Collections.unmodifiableMap(layers);
    }

    @Override
    public Map<String, Param> parameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        layers.forEach((path, layer) -> layer.adapterParameters(name).forEach((k, p) -> out.put(path + "." + k, p)));
        return out;
    }

    private Map<String, Param> byKey() {
        Map<String, Param> out = new LinkedHashMap<>();
        layers.forEach((path, layer) -> layer.adapterParameters(name)
                .forEach((k, p) -> out.put(keyPrefix + path + "." + layer.savedName(k, name), p)));
        return out;
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        byKey().forEach((k, p) -> out.put(k, p.array()));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        copyInto(byKey(), tensors, source);
    }

    /**
     * Copies tensors into parameters by key, checking that the key sets match and that shapes agree.
     *
     * @param params key to parameter
     * @param tensors key to loaded array
     * @param source the file, for messages
     */
    public static void copyInto(Map<String, Param> params, Map<String, NDArray> tensors, String source) {
        for (String k : tensors.keySet()) {
            if (!params.containsKey(k)) {
                throw new PeftException(source + ": unexpected tensor '" + k + "'; this adapter on this model has "
                        + params.size() + " tensors, e.g. '" + params.keySet().stream().findFirst().orElse("") + "'");
            }
        }
        for (Map.Entry<String, Param> e : params.entrySet()) {
            NDArray t = tensors.get(e.getKey());
            if (t == null) {
                throw new PeftException(source + ": missing tensor '" + e.getKey() + "' (shape " + e.getValue().shape() + ")");
            }
            Param p = e.getValue();
            if (!t.getShape().equals(p.shape())) {
                throw new PeftException(source + ": tensor '" + e.getKey() + "' has shape " + t.getShape()
                        + ", the model needs " + p.shape());
            }
            // a fresh libtorch copy in the parameter's dtype, device and manager
            p.set(io.github.peft4j.nn.Ops.ownedCopy(t, p.array().getManager(), p.array().getDataType()));
        }
    }

    /**
     * As HF PEFT: a merged adapter stops acting while it is inactive (another adapter made active, or a disabled
     * scope), so its merged layers are unmerged then, and merged again when it becomes active.
     */
    @Override
    public void activeChanged(boolean active) {
        if (active) {
            suspended.forEach(l -> l.merge(name));
            suspended.clear();
            return;
        }
        for (AdapterLayer layer : layers.values()) {
            if (layer.isMerged(name)) {
                layer.unmerge(name);
                suspended.add(layer);
            }
        }
    }

    @Override
    public boolean canMerge() {
        return layers.values().stream().allMatch(AdapterLayer::canMerge);
    }

    /** @return whether any of this adapter's layers is merged into the base weights now */
    public boolean isMerged() {
        return layers.values().stream().anyMatch(l -> l.isMerged(name));
    }

    /**
     * {@link Mergeable} only where every layer can merge; {@link RowRouted} only where every layer routes rows.
     */
    @Override
    public <T> T capability(Class<T> type) {
        if (type == Mergeable.class && !canMerge()) {
            return null;
        }
        if (type == RowRouted.class && !layers.values().stream().allMatch(AdapterLayer::supportsRowGroups)) {
            return null;
        }
        return Adapter.super.capability(type);
    }

    @Override
    public void merge() {
        layers.values().forEach(l -> l.merge(name));
    }

    @Override
    public void unmerge() {
        suspended.clear();
        layers.values().forEach(l -> l.unmerge(name));
    }

    @Override
    public void remove() {
        suspended.clear(); // a merge taken out by deactivation is not folded back: the base weights stay original
        layers.forEach((path, layer) -> {
            layer.removeAdapter(name);
            if (layer.adapterNames().isEmpty()) {
                unwrap(model, path, layer);
            }
        });
        layers.clear();
    }
}
