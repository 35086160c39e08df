package io.github.peft4j.adapters;

import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * An IA3 adapter: {@link LayerAdapter} over {@link IA3Layer}s (saving, loading, merging, removal), plus HF's
 * rule that a merged adapter stops acting when adapters are disabled: while inactive (a disabled scope, or
 * another adapter made active) its merged layers are divided out, and folded in again when it becomes
 * active.
 */
public final class IA3Adapter extends LayerAdapter {
    private final List<IA3Layer> suspended = new ArrayList<>();

    /**
     * @param name the adapter name
     * @param config its config
     * @param model the model
     * @param layers module path to wrapper
     */
    public IA3Adapter(String name, IA3Config config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
    }

    @Override
    public void activeChanged(boolean active) {
        if (active) {
            suspended.forEach(l -> l.merge(name()));
            suspended.clear();
            return;
        }
        for (AdapterLayer layer : layers().values()) {
            IA3Layer l = (IA3Layer) layer;
            if (l.isMerged(name())) {
                l.unmerge(name());
                suspended.add(l);
            }
        }
    }

    @Override
    public void unmerge() {
        suspended.clear();
        super.unmerge();
    }

    @Override
    public void remove() {
        // a merge suspended by deactivation is not folded back: the base weights stay original
        suspended.clear();
        super.remove();
    }
}
