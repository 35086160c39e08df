package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import java.util.ArrayList;
import java.util.List;

/**
 * Keys and values of earlier positions, per layer, each {@code [B, kvHeads, T, headDim]}. Used for incremental
 * decoding and by prefix tuning, whose learned prefix is such a cache of {@code num_virtual_tokens} positions.
 */
public final class KvCache {
    private final List<NDArray> keys;
    private final List<NDArray> values;

    /**
     * Creates a cache from per-layer keys and values.
     *
     * @param keys per layer {@code [B, kvHeads, T, headDim]}
     * @param values per layer {@code [B, kvHeads, T, headDim]}
     */
    public KvCache(List<NDArray> keys, List<NDArray> values) {
        if (keys.size() != values.size()) {
            throw new IllegalArgumentException("keys for " + keys.size() + " layers but values for " + values.size());
        }
        this.keys = new ArrayList<>(keys);
        this.values = new ArrayList<>(values);
    }

    /** @return the number of layers */
    public int numLayers() {
        return keys.size();
    }

    /** @return the number of cached positions */
    public long length() {
        return keys.isEmpty() ? 0 : keys.get(0).getShape().get(2);
    }

    /**
     * @param layer the layer index
     * @return the cached keys of that layer
     */
    public NDArray keys(int layer) {
        return keys.get(layer);
    }

    /**
     * @param layer the layer index
     * @return the cached values of that layer
     */
    public NDArray values(int layer) {
        return values.get(layer);
    }
}
