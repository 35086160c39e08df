package io.github.peft4j.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.Mergeable;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A BitFit adapter: its parameters are the model's own bias {@link Param}s, trained in place. A snapshot of
 * the original values taken at attach time makes the adapter switchable: while inactive (a disabled scope or
 * another adapter active) the originals are in the model and the tuned values are held aside; removal puts
 * the originals back unless the adapter was merged, in which case the tuned values stay (so
 * {@code mergeAndUnload} keeps them).
 *
 * <p>In an fp16 model the selected biases are fp32 while the adapter is attached (trainable leaves, cast to the
 * compute dtype in forward); removal converts them back.
 *
 * <p>Saved as {@code adapter_model.safetensors} with keys {@code base_model.model.<module path>.bias}.
 */
public final class BitFitAdapter implements Adapter, Mergeable {
    private final String name;
    private final BitFitConfig config;
    private final Map<String, Param> params;
    private final Map<String, NDArray> originals = new LinkedHashMap<>();
    private final Map<String, NDArray> heldTuned = new LinkedHashMap<>();
    private boolean swappedOut;
    private boolean merged;

    /**
     * @param name the adapter name
     * @param config its config
     * @param biases {@code <module path>.bias} to the module's bias parameter
     */
    BitFitAdapter(String name, BitFitConfig config, Map<String, Param> biases) {
        this.name = name;
        this.config = config;
        this.params = new LinkedHashMap<>(biases);
        params.forEach((k, p) -> originals.put(k, copyOf(p.array())));
        // fp16 biases become fp32 trainable leaves (Dense and LayerNorm cast them to the compute dtype in forward);
        // remove() gives the model its dtype back
        params.values().stream().filter(p -> p.array().getDataType() == DataType.FLOAT16)
                .forEach(p -> p.set(copyOf(p.array(), DataType.FLOAT32)));
    }

    /** A snapshot outside the autograd graph and any scope, in the array's manager. */
    private static NDArray copyOf(NDArray a) {
        return copyOf(a, a.getDataType());
    }

    private static NDArray copyOf(NDArray a, DataType dtype) {
        return io.github.peft4j.nn.Ops.ownedCopy(a, a.getManager(), dtype);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PeftConfig config() {
        return config;
    }

    /** @return {@code <module path>.bias} to the selected base bias parameters */
    @Override
    public Map<String, Param> parameters() {
        return Collections.unmodifiableMap(params);
    }

    /** @return whether the tuned values are in the model now (false while inactive) */
    public boolean isApplied() {
        return !swappedOut;
    }

    /** @return whether the adapter is marked merged */
    public boolean isMerged() {
        return merged;
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        params.forEach((k, p) -> out.put(LayerAdapter.TUNER_PREFIX + k, swappedOut ? heldTuned.get(k) : p.array()));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        Map<String, Param> targets = new LinkedHashMap<>();
        params.forEach((k, p) -> targets.put(LayerAdapter.TUNER_PREFIX + k, swappedOut ? new Param(heldTuned.get(k)) : p));
        LayerAdapter.copyInto(targets, tensors, source);
        if (swappedOut) {
            params.keySet().forEach(k -> heldTuned.put(k, targets.get(LayerAdapter.TUNER_PREFIX + k).array()));
        }
    }

    /**
     * Swaps the original biases in (inactive) or the tuned ones back (active).
     *
     * @param active the new state
     */
    @Override
    public void activeChanged(boolean active) {
        if (active && swappedOut) {
            params.forEach((k, p) -> p.set(heldTuned.remove(k)));
            swappedOut = false;
        } else if (!active && !swappedOut) {
            params.forEach((k, p) -> {
                heldTuned.put(k, copyOf(p.array()));
                p.set(copyOf(originals.get(k)));
            });
            swappedOut = true;
        }
    }

    /** @return true: the tuned biases already are the model's */
    @Override
    public boolean canMerge() {
        return true;
    }

    /** Marks the adapter merged: on removal the tuned biases stay in the model. */
    @Override
    public void merge() {
        merged = true;
    }

    /** Marks the adapter unmerged: on removal the original biases come back. */
    @Override
    public void unmerge() {
        merged = false;
    }

    /** Restores the original biases (or keeps the tuned ones if merged), freezes them and frees the snapshots. */
    @Override
    public void remove() {
        if (params.isEmpty()) {
            return;
        }
        params.forEach((k, p) -> {
            if (merged && swappedOut) {
                p.set(heldTuned.remove(k));
            } else if (!merged && !swappedOut) {
                p.set(copyOf(originals.get(k)));
            }
            NDArray original = originals.get(k);
            if (p.array().getDataType() != original.getDataType()) {
                p.set(copyOf(p.array(), original.getDataType()));
            }
            p.setTrainable(false);
        });
        heldTuned.values().forEach(NDArray::close);
        heldTuned.clear();
        originals.values().forEach(NDArray::close);
        originals.clear();
        params.clear();
    }
}
