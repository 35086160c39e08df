package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.Mergeable;
import io.github.peft4j.peft.PeftConfig;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * An adapter whose parameters are existing parameters of the model, selected by a rule and trained in place
 * (BitFit, {@code SELECTIVE}, {@code LAST_K}, {@code LN_TUNING}). The methods differ only in what they select and how
 * a parameter's saved key is spelled; this class does the rest once.
 *
 * <p><b>No second copy.</b> The original values are needed again when the adapter is deactivated (a disabled scope,
 * another adapter made active) or removed unmerged. They are written once, at attach time, to a private temporary
 * safetensors file ({@link #spilledBytes()}), not kept in memory; while the adapter is inactive its tuned values are
 * spilled the same way and the originals read back into the model. So selecting whole layers costs their weights
 * once in memory (plus the optimizer's state), not twice.
 *
 * <p>In an fp16 model the selected parameters are fp32 while the adapter is attached (trainable leaves, cast to the
 * compute dtype in forward by the modules); removal converts them back. A parameter can belong to one in-place
 * adapter at a time.
 *
 * <p>Saved as {@code adapter_model.safetensors} with one tensor per selected parameter, keyed {@code base_model.model.}
 * + the method's spelling of {@code <module path>.<parameter>} (BitFit, SELECTIVE, LAST_K: unchanged; LN_TUNING:
 * {@code <module path>.ln_tuning_layers.<parameter>}, HF's key).
 */
public final class InPlaceAdapter implements Adapter, Mergeable {
    private static final String ORIGINALS = "originals";
    private static final String TUNED = "tuned";
    private final String name;
    private final PeftConfig config;
    private final Map<String, Param> params;
    private final UnaryOperator<String> savedKey;
    private final Map<String, DataType> originalTypes = new LinkedHashMap<>();
    private final SpillStore spill = new SpillStore();
    private boolean swappedOut;
    private boolean merged;

    /**
     * Selects the parameters: writes their originals to disk, makes fp16 ones fp32.
     *
     * @param context the model and the adapters already attached (a parameter another in-place adapter holds is refused)
     * @param name the adapter name
     * @param config its config
     * @param params {@code <module path>.<parameter>} to the model's parameter, in model order (not empty)
     * @param savedKey the saved key of a {@code <module path>.<parameter>} name, without {@code base_model.model.}
     */
    public InPlaceAdapter(AdapterContext context, String name, PeftConfig config, Map<String, Param> params,
            UnaryOperator<String> savedKey) {
        if (params.isEmpty()) {
            throw new PeftException(config.peftType() + ": the selection of adapter '" + name + "' is empty");
        }
        for (Adapter other : context.adapters().values()) {
            if (other instanceof InPlaceAdapter o) {
                for (String k : params.keySet()) {
                    if (o.params.containsKey(k) && o.params.get(k) == params.get(k)) {
                        throw new PeftException(config.peftType() + ": parameter '" + k + "' is already trained in place by "
                                + o.config.peftType() + " adapter '" + o.name + "' (a parameter can belong to one such adapter);"
                                + " delete it before adding '" + name + "'");
                    }
                }
            }
        }
        this.name = name;
        this.config = config;
        this.params = new LinkedHashMap<>(params);
        this.savedKey = savedKey;
        Map<String, NDArray> originals = new LinkedHashMap<>();
        this.params.forEach((k, p) -> {
            originals.put(k, p.array());
            originalTypes.put(k, p.array().getDataType());
        });
        spill.put(ORIGINALS, originals);
        // fp16 parameters become fp32 trainable leaves (the modules cast them to the compute dtype in forward);
        // remove() gives the model its dtype back
        this.params.values().stream().filter(p -> p.array().getDataType() == DataType.FLOAT16)
                .forEach(p -> p.set(Ops.ownedCopy(p.array(), p.array().getManager(), DataType.FLOAT32)));
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PeftConfig config() {
        return config;
    }

    /** @return {@code <module path>.<parameter>} to the selected model parameters */
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

    /**
     * @return bytes of the values set aside on disk (the originals, and the tuned values while inactive); nothing of
     *     the selection is held in memory besides the model's own parameters
     */
    public long spilledBytes() {
        return spill.bytes(ORIGINALS) + (swappedOut ? spill.bytes(TUNED) : 0);
    }

    private Map<String, NDArray> tuned() {
        if (!swappedOut) {
            Map<String, NDArray> out = new LinkedHashMap<>();
            params.forEach((k, p) -> out.put(k, p.array()));
            return out;
        }
        return spill.getAll(TUNED, k -> params.get(k).array().getManager());
    }

    /** The tuned values, keyed as saved; while inactive they are read back from disk (owned by the caller's managers). */
    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        tuned().forEach((k, a) -> out.put(LayerAdapter.TUNER_PREFIX + savedKey.apply(k), a));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        Map<String, Param> targets = new LinkedHashMap<>();
        Map<String, NDArray> held = swappedOut ? spill.getAll(TUNED, k -> params.get(k).array().getManager()) : null;
        params.forEach((k, p) -> targets.put(LayerAdapter.TUNER_PREFIX + savedKey.apply(k), swappedOut ? new Param(held.get(k)) : p));
        LayerAdapter.copyInto(targets, tensors, source);
        if (swappedOut) {
            Map<String, NDArray> now = new LinkedHashMap<>();
            params.keySet().forEach(k -> now.put(k, targets.get(LayerAdapter.TUNER_PREFIX + savedKey.apply(k)).array()));
            spill.put(TUNED, now);
            now.values().forEach(NDArray::close);
        }
    }

    /**
     * Swaps the originals in (inactive: the tuned values go to disk) or the tuned values back (active).
     *
     * @param active the new state
     */
    @Override
    public void activeChanged(boolean active) {
        if (active && swappedOut) {
            setAll(spill.getAll(TUNED, k -> params.get(k).array().getManager()));
            swappedOut = false;
        } else if (!active && !swappedOut) {
            spill.put(TUNED, tuned());
            setAll(originals());
            swappedOut = true;
        }
    }

    private Map<String, NDArray> originals() {
        return spill.getAll(ORIGINALS, k -> params.get(k).array().getManager());
    }

    /** Puts arrays into the parameters, in the dtype each parameter has while attached. */
    private void setAll(Map<String, NDArray> values) {
        params.forEach((k, p) -> {
            NDArray v = values.get(k);
            DataType want = p.array().getDataType();
            p.set(v.getDataType() == want ? v : convert(v, want));
        });
    }

    private static NDArray convert(NDArray v, DataType dtype) {
        NDArray c = Ops.ownedCopy(v, v.getManager(), dtype);
        v.close();
        return c;
    }

    /** @return true: the tuned values already are the model's */
    @Override
    public boolean canMerge() {
        return true;
    }

    /** Marks the adapter merged: on removal the tuned values stay in the model. */
    @Override
    public void merge() {
        merged = true;
    }

    /** Marks the adapter unmerged: on removal the originals come back. */
    @Override
    public void unmerge() {
        merged = false;
    }

    /** Restores the originals (or keeps the tuned values if merged), freezes them and deletes the spilled files. */
    @Override
    public void remove() {
        if (params.isEmpty()) {
            return;
        }
        if (merged && swappedOut) {
            setAll(spill.getAll(TUNED, k -> params.get(k).array().getManager()));
        } else if (!merged && !swappedOut) {
            setAll(originals());
        }
        params.forEach((k, p) -> {
            DataType original = originalTypes.get(k);
            if (p.array().getDataType() != original) {
                p.set(Ops.ownedCopy(p.array(), p.array().getManager(), original));
            }
            p.setTrainable(false);
        });
        spill.close();
        params.clear();
    }
}
