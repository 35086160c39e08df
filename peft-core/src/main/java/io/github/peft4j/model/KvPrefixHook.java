package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;

/** Keys and values a method prepends at a {@link SiteRole#KV_PREFIX} site. */
@FunctionalInterface
public interface KvPrefixHook {
    /**
     * @param hidden the attention input of the layer {@code [B, S, hidden]} (for gates computed from it)
     * @return the prefix, or null when the hook does not act on this call
     */
    Prefix prefix(NDArray hidden);

    /**
     * A key/value prefix for one layer.
     *
     * @param keys {@code [B, kvHeads, n, headDim]}
     * @param values {@code [B, kvHeads, n, headDim]}
     */
    record Prefix(NDArray keys, NDArray values) {}
}
