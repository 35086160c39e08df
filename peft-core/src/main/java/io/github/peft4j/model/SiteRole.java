package io.github.peft4j.model;

/**
 * The named places every model offers to methods that add computation inside the network (bottleneck adapters,
 * gated mixes, prefix-style keys and values). A method targets a role, never a model-specific module name; the
 * model decides where the role sits in its own blocks. Each role exists once per transformer layer, except
 * {@link #EMBEDDING_OUTPUT} (once per model).
 */
public enum SiteRole {
    /**
     * The output of the attention sub-block after its output projection (and its dropout), before the residual
     * add and, for post-LN models (BERT), before the LayerNorm. A hook sees the sub-block input, this output and the
     * residual, and returns the new output (AdapterHub's Pfeiffer / Houlsby placement).
     */
    ATTENTION_OUTPUT,
    /** As {@link #ATTENTION_OUTPUT} for the feed-forward sub-block. */
    FFN_OUTPUT,
    /**
     * Parallel to the attention sub-block: a hook computes from the sub-block's input (after the pre-norm in
     * pre-LN models) and adds to its output, before the residual add (AdapterHub's parallel adapter).
     */
    ATTENTION_PARALLEL,
    /** As {@link #ATTENTION_PARALLEL} for the feed-forward sub-block. */
    FFN_PARALLEL,
    /**
     * Keys and values prepended in the attention of a layer (after rotary embeddings where the model has them),
     * visible to every query, not stored in the returned cache. A hook computes them from the layer's attention
     * input, so it can gate them per row (UniPELT).
     */
    KV_PREFIX,
    /** The output of the embedding block (after its LayerNorm and dropout where the model has them). */
    EMBEDDING_OUTPUT
}
