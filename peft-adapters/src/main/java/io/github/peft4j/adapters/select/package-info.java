/**
 * Selective methods: parameter selection by rule, generalising BitFit. In place ({@link
 * io.github.peft4j.adapters.select.InPlaceAdapter}, originals spilled to disk): {@code SELECTIVE} (module-name
 * patterns), {@code LAST_K} (the last k layers), {@code LN_TUNING} (HF PEFT's LayerNorm tuning, its file format) and
 * BitFit ({@link io.github.peft4j.adapters.BitFitMethod}). Masked: {@code SPARSE_MASK} (a fixed mask of the smallest- or
 * largest-magnitude entries, only those entries trainable) and {@code DIFF_PRUNING} (a learned hard-concrete mask with
 * an L0 penalty through the extra-loss hook).
 */
package io.github.peft4j.adapters.select;
