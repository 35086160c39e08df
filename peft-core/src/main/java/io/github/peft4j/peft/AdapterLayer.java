package io.github.peft4j.peft;

import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Layer;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * A layer a method puts into a model slot in place of the original, which it keeps as a child (HF PEFT's
 * {@code base_layer}). One wrapper holds every adapter of its method on that slot; its forward pass applies
 * the adapters that {@link AdapterState} says are active.
 */
public abstract class AdapterLayer extends Module implements Layer {
    /** The shared active-adapter state. */
    protected final AdapterState state;
    private final String baseName;

    /**
     * @param baseName the child name of the wrapped original ({@code base_layer})
     * @param base the original module
     * @param state the shared active-adapter state
     */
    protected AdapterLayer(String baseName, Module base, AdapterState state) {
        this.baseName = baseName;
        this.state = state;
        add(baseName, base);
    }

    /** @return the wrapped original module */
    public Module baseModule() {
        return child(baseName);
    }

    /**
     * Replaces the wrapped module (when a wrapper below this one in a chain is removed).
     *
     * @param base the new wrapped module
     */
    void replaceBase(Module base) {
        replace(baseName, base);
    }

    /** @return the wrapped original as a layer */
    public Layer base() {
        return (Layer) child(baseName);
    }

    /** @return the adapters this wrapper holds */
    public abstract Set<String> adapterNames();

    /**
     * The parameters of one adapter, keyed by their local name below this wrapper
     * ({@code lora_A.default.weight}).
     *
     * @param adapter the adapter name
     * @return local name to parameter
     */
    public Map<String, Param> adapterParameters(String adapter) {
        Map<String, Param> out = new LinkedHashMap<>();
        Pattern seg = segment(adapter);
        parameters().forEach((k, v) -> {
            if (!k.startsWith(baseName + ".") && seg.matcher(k).find()) {
                out.put(k, v);
            }
        });
        return out;
    }

    /**
     * The name a parameter is saved under (relative to this wrapper's path): HF PEFT removes the adapter
     * name ({@code lora_A.default.weight} -> {@code lora_A.weight}).
     *
     * @param local the local in-memory name
     * @param adapter the adapter name
     * @return the saved name
     */
    public String savedName(String local, String adapter) {
        return segment(adapter).matcher(local).replaceAll("");
    }

    /** HF PEFT's rule: the segment {@code .name} followed by a dot or the end. */
    private static Pattern segment(String adapter) {
        return Pattern.compile("\\." + Pattern.quote(adapter) + "(?=\\.|$)");
    }

    /**
     * Removes one adapter and frees its arrays.
     *
     * @param adapter the adapter name
     */
    public abstract void removeAdapter(String adapter);

    /**
     * Adds an adapter's update to the base weights.
     *
     * @param adapter the adapter name
     */
    public void merge(String adapter) {
        throw new PeftException(getClass().getSimpleName() + " cannot merge");
    }

    /**
     * Subtracts a merged update.
     *
     * @param adapter the adapter name
     */
    public void unmerge(String adapter) {
        throw new PeftException(getClass().getSimpleName() + " cannot unmerge");
    }

    /**
     * @param adapter an adapter name
     * @return whether that adapter's update is currently merged into the base weights
     */
    public boolean isMerged(String adapter) {
        return false;
    }

    /**
     * Why this layer cannot merge, for the error of a merge request (the default: its base has no dense weights).
     *
     * @param path the layer's module path
     * @return the reason, e.g. {@code its layer at 'q_proj' wraps a Linear4bit, which has no dense weights to merge into}
     */
    public String whyNoMerge(String path) {
        return "its layer at '" + path + "' wraps a " + baseModule().getClass().getSimpleName()
                + ", which has no dense weights to merge into";
    }

    /** @return whether {@link #merge} is supported */
    public boolean canMerge() {
        return false;
    }

    /**
     * @return whether this layer runs each row of a mixed-adapter batch with its own adapter ({@link RowGroups});
     *     a method whose layers cannot is refused for such batches
     */
    public boolean supportsRowGroups() {
        return false;
    }

    /**
     * The row groups of the current forward call when it is a mixed-adapter batch.
     *
     * @param x the layer input (its manager holds the index arrays)
     * @return the groups, or null for an ordinary call
     */
    protected RowGroups rowGroups(ai.djl.ndarray.NDArray x) {
        return state.rowGroups(x.getManager());
    }
}
