package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A {@code SPARSE_MASK} adapter: {@link SparseMaskLayer}s whose file codec adds each layer's positions
 * ({@code <module path>.sparse_indices}) to the values {@link LayerAdapter} saves ({@code <module path>.sparse_values}).
 */
public final class SparseMaskAdapter extends LayerAdapter {
    /** Saved-key suffix of the positions. */
    public static final String INDICES = "sparse_indices";

    /**
     * @param name the adapter name
     * @param config its config
     * @param model the model
     * @param layers module path to layer
     */
    SparseMaskAdapter(String name, PeftConfig config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        layers().forEach((path, l) -> out.put(TUNER_PREFIX + path + "." + INDICES, ((SparseMaskLayer) l).indices(name())));
        out.putAll(super.stateDict());
        return out;
    }

    /** Takes each layer's mask from the file (the values then load as for any layer adapter). */
    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        Map<String, NDArray> rest = new LinkedHashMap<>(tensors);
        layers().forEach((path, l) -> {
            String key = TUNER_PREFIX + path + "." + INDICES;
            NDArray idx = rest.remove(key);
            if (idx == null) {
                throw new PeftException(source + ": missing tensor '" + key + "' (the positions of the sparse mask)");
            }
            ((SparseMaskLayer) l).setIndices(name(), idx.duplicate(), source + " tensor '" + key + "'");
        });
        super.loadStateDict(rest, source);
    }
}
