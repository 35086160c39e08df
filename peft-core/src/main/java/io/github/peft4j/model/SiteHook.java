package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;

/**
 * Computation a method installs at a {@link HookSite} of role {@link SiteRole#ATTENTION_OUTPUT},
 * {@link SiteRole#FFN_OUTPUT}, {@link SiteRole#ATTENTION_PARALLEL}, {@link SiteRole#FFN_PARALLEL} or
 * {@link SiteRole#EMBEDDING_OUTPUT}. The hook decides itself whether it acts on this call (its adapter inactive:
 * it returns {@code output} unchanged).
 */
@FunctionalInterface
public interface SiteHook {
    /**
     * @param input the sub-block's input {@code [B, S, hidden]} (after the pre-norm in pre-LN models; the token
     *     embeddings for {@link SiteRole#EMBEDDING_OUTPUT})
     * @param output the sub-block's output so far {@code [B, S, hidden]}
     * @param residual the stream the output is added to next {@code [B, S, hidden]}, or null where none
     *     ({@link SiteRole#EMBEDDING_OUTPUT})
     * @return the new output (the same array when the hook does nothing)
     */
    NDArray apply(NDArray input, NDArray output, NDArray residual);
}
