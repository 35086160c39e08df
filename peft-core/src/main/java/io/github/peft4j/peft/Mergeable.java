package io.github.peft4j.peft;

/**
 * A capability of an {@link Adapter} whose update can be folded into the base weights (LoRA, IA3). While merged,
 * the adapter's own term is skipped in the forward pass.
 */
public interface Mergeable {
    /** @return whether every part of this adapter can merge now (some layers of a method may not) */
    default boolean canMerge() {
        return true;
    }

    /** Adds this adapter's update to the base weights. */
    void merge();

    /** Subtracts a merged update again (exact up to rounding). */
    void unmerge();
}
