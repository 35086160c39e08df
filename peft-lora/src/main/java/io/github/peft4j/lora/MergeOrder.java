package io.github.peft4j.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.PeftException;
import java.util.ArrayList;
import java.util.List;

/**
 * The adapters merged into one layer's weight, in merge order, and HF PEFT's rules for merging in turn: a plain LoRA
 * update adds to the weight, a DoRA one rescales it ({@code g ⊙ (W + ΔW)}) with a norm taken from the weight with
 * nothing merged (HF's {@code _unmerged_base_weight}: the merged adapters are taken out and put back). Unmerging an
 * adapter that a later DoRA merge rescaled takes every merged adapter out and puts the others back. Public for the
 * other LoRA-family layers (AdaLoRA), whose merges are additive.
 */
public final class MergeOrder {
    /** An empty order: nothing merged. */
    public MergeOrder() {}

    /** How one layer computes its weight with an adapter merged in or taken out. */
    public interface Weights {
        /** @return the stored weight array, updated in place */
        NDArray weight();

        /**
         * @param adapter an adapter name
         * @return whether its merge rescales the weight (DoRA) instead of adding to it
         */
        boolean rescales(String adapter);

        /**
         * @param adapter the adapter to merge
         * @param clean the weight with nothing merged (stored layout); the current weight when nothing is merged
         * @return the new weight
         */
        NDArray merged(String adapter, NDArray clean);

        /**
         * @param adapter the adapter to take out (it was merged last, or is plain LoRA)
         * @return the new weight
         */
        NDArray unmerged(String adapter);
    }

    private final List<String> order = new ArrayList<>();

    /**
     * @param adapter an adapter name
     * @return whether it is merged
     */
    public boolean contains(String adapter) {
        return order.contains(adapter);
    }

    /**
     * Merges an adapter (no-op when merged already), checking that the result is finite before it replaces the weight.
     *
     * @param adapter the adapter
     * @param w the layer
     */
    public void merge(String adapter, Weights w) {
        if (order.contains(adapter)) {
            return;
        }
        if (w.rescales(adapter) && !order.isEmpty()) {
            List<String> again = new ArrayList<>(order);
            try (NDArray clean = takeOutAll(w)) {
                again.forEach(n -> mergeOne(n, w, clean));
                mergeOne(adapter, w, clean);
            }
            return;
        }
        mergeOne(adapter, w, w.weight());
    }

    /**
     * Takes an adapter out of the weight (no-op when not merged).
     *
     * @param adapter the adapter
     * @param w the layer
     */
    public void unmerge(String adapter, Weights w) {
        int at = order.indexOf(adapter);
        if (at < 0) {
            return;
        }
        boolean last = at == order.size() - 1;
        boolean additive = !w.rescales(adapter) && order.subList(at + 1, order.size()).stream().noneMatch(w::rescales);
        if (last || additive) {
            unmergeOne(adapter, w);
            return;
        }
        List<String> keep = new ArrayList<>(order);
        keep.remove(adapter);
        try (NDArray clean = takeOutAll(w)) {
            keep.forEach(n -> mergeOne(n, w, clean));
        }
    }

    /**
     * Drops an adapter from the order without touching the weight (its merged update stays, as HF's unload).
     *
     * @param adapter the adapter
     */
    public void forget(String adapter) {
        order.remove(adapter);
    }

    /** Takes every merged adapter out, last first, and returns a copy of the clean weight (order is then empty). */
    private NDArray takeOutAll(Weights w) {
        for (int i = order.size() - 1; i >= 0; i--) {
            unmergeOne(order.get(i), w);
        }
        return w.weight().duplicate();
    }

    private void mergeOne(String adapter, Weights w, NDArray clean) {
        NDArray target = w.weight();
        try (NDScope scope = new NDScope()) { // frees the temporaries; a DoRA norm kept for unmerge unregisters itself
            NDArray next = w.merged(adapter, clean);
            if (next.isNaN().logicalOr(next.isInfinite()).any().getBoolean()) {
                throw new PeftException("merging LoRA adapter '" + adapter + "' gives non-finite weights; the base weight is unchanged");
            }
            next.toType(target.getDataType(), false).copyTo(target);
        }
        order.add(adapter);
    }

    private void unmergeOne(String adapter, Weights w) {
        NDArray target = w.weight();
        try (NDScope scope = new NDScope()) {
            NDArray next = w.unmerged(adapter);
            next.toType(target.getDataType(), false).copyTo(target);
        }
        order.remove(adapter);
    }
}
