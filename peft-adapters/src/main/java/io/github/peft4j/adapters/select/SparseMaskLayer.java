package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ProjectionWrapper;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * A fixed sparse mask over a dense projection's weight (kept as {@code base_layer}): each adapter owns the positions
 * {@code idx} of its entries (int64 {@code (k)}, flat, in the stored layout; not a parameter) and their trainable values
 * {@code sparse_values.<adapter>} (fp32 {@code (k)}, starting at the base values). The forward pass uses the base weight
 * with those entries replaced, {@code W' = W.put(idx, values)}, in one {@code linear} call; the gradient of the values
 * is the weight gradient at {@code idx}. The mask is structural: the only trainable tensor is the {@code k} values, so
 * the optimizer, its weight decay and AdamW's moments exist for the selected entries alone, and the base weight is never
 * written (bit-identical) unless the adapter is merged. Merging writes the values into the weight; unmerging writes the
 * base values back (kept, {@code k} of them).
 */
public final class SparseMaskLayer extends ProjectionWrapper {
    /** Local parameter name prefix; saved as {@code <module path>.sparse_values}. */
    public static final String VALUES = "sparse_values";
    private final Map<String, NDArray> indices = new LinkedHashMap<>();
    private final Map<String, NDArray> originals = new LinkedHashMap<>();
    private final Set<String> merged = new LinkedHashSet<>();

    /**
     * @param base the projection in the slot; it must have dense weights
     * @param state the shared active-adapter state
     * @param path the module path, for messages
     */
    public SparseMaskLayer(Projection base, AdapterState state, String path) {
        super(base, state);
        if (base.dense() == null) {
            throw new PeftException("SPARSE_MASK: module '" + path + "' is a " + base.getClass().getSimpleName()
                    + " without dense weights (quantised, or wrapped by another method); a sparse mask needs a dense weight");
        }
    }

    /**
     * Adds an adapter: chooses its entries by magnitude.
     *
     * @param adapter the adapter name
     * @param count how many entries
     * @param largest true for the largest magnitudes, false for the smallest
     * @param path the module path, for messages
     */
    public void addAdapter(String adapter, long count, boolean largest, String path) {
        if (indices.containsKey(adapter)) {
            throw new PeftException("module '" + path + "' already has a sparse mask for adapter '" + adapter + "'");
        }
        NDArray w = denseBase().weight().array();
        NDArray idx;
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            NDArray order = w.abs().flatten().argSort(0, !largest);
            idx = order.get("0:" + count).sort();
            NDScope.unregister(idx);
        } finally {
            JniUtils.setGradMode(grad);
        }
        setIndices(adapter, idx, path);
    }

    /**
     * Sets (or replaces, from a file) an adapter's positions; its values restart at the base values there.
     *
     * @param adapter the adapter name
     * @param idx int64 {@code (k)} flat positions, each in {@code [0, numel)}; taken over
     * @param where the file or module, for messages
     */
    void setIndices(String adapter, NDArray idx, String where) {
        NDArray w = denseBase().weight().array();
        long numel = w.getShape().size();
        if (idx.getShape().dimension() != 1 || idx.getDataType() != DataType.INT64) {
            throw new PeftException(where + ": sparse_indices must be a 1-d int64 tensor, got " + idx.getDataType() + " "
                    + idx.getShape());
        }
        long[] v = idx.toLongArray();
        for (long i : v) {
            if (i < 0 || i >= numel) {
                throw new PeftException(where + ": sparse_indices entry " + i + " is outside the weight's " + numel + " entries");
            }
        }
        if (merged.contains(adapter)) {
            throw new PeftException(where + ": cannot replace the mask of merged adapter '" + adapter + "'; unmerge it first");
        }
        NDManager m = w.getManager();
        NDArray owned = Ops.ownedCopy(idx, m, DataType.INT64);
        idx.close();
        NDArray base;
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try {
            base = Ops.ownedCopy(w.flatten().get(owned), m, w.getDataType());
        } finally {
            JniUtils.setGradMode(grad);
        }
        put(indices, adapter, owned);
        put(originals, adapter, base);
        Param values = localParameters().get(key(adapter));
        NDArray start = Ops.ownedCopy(base, m, DataType.FLOAT32);
        if (values == null) {
            register(key(adapter), new Param(start));
        } else {
            values.set(start);
        }
    }

    private static void put(Map<String, NDArray> map, String k, NDArray v) {
        NDArray old = map.put(k, v);
        if (old != null) {
            old.close();
        }
    }

    private static String key(String adapter) {
        return VALUES + "." + adapter;
    }

    /**
     * @param adapter an adapter on this layer
     * @return its positions, int64 {@code (k)} (do not close)
     */
    public NDArray indices(String adapter) {
        NDArray i = indices.get(adapter);
        if (i == null) {
            throw new PeftException("sparse mask layer has no adapter '" + adapter + "'; it has " + indices.keySet());
        }
        return i;
    }

    /**
     * @param adapter an adapter on this layer
     * @return its trainable values
     */
    public Param values(String adapter) {
        indices(adapter);
        return localParameters().get(key(adapter));
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray w = null;
        for (String a : indices.keySet()) {
            if (!state.isActive(a) || merged.contains(a)) {
                continue;
            }
            DataType dt = x.getDataType();
            if (w == null) {
                w = Ops.cast(denseBase().weight().array(), dt).flatten();
            }
            w = w.put(indices.get(a), Ops.cast(values(a).array(), dt)); // out of place: gradient flows to the values
        }
        if (w == null) {
            return base().forward(x);
        }
        Shape stored = denseBase().weight().shape();
        NDArray weight = w.reshape(stored);
        Param bias = denseBase().bias();
        NDArray b = bias == null ? null : Ops.cast(bias.array(), x.getDataType());
        return Ops.linear(x, denseBase().fanInFanOut() ? weight.transpose() : weight, b);
    }

    @Override
    public Set<String> adapterNames() {
        return Collections.unmodifiableSet(indices.keySet());
    }

    @Override
    public boolean isMerged(String adapter) {
        return merged.contains(adapter);
    }

    @Override
    public boolean canMerge() {
        return true;
    }

    /** Writes the adapter's values into the base weight at its positions. */
    @Override
    public void merge(String adapter) {
        if (!merged.contains(adapter)) {
            write(adapter, values(adapter).array());
            merged.add(adapter);
        }
    }

    /** Writes the base values back at the adapter's positions. */
    @Override
    public void unmerge(String adapter) {
        if (merged.remove(adapter)) {
            write(adapter, originals.get(adapter));
        }
    }

    /** Replaces the base weight by a copy with {@code values} at the adapter's positions (no gradient recorded). */
    private void write(String adapter, NDArray values) {
        Param weight = denseBase().weight();
        NDArray w = weight.array();
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            NDArray v = Ops.ownedCopy(values, w.getManager(), w.getDataType());
            NDArray next = w.flatten().put(indices.get(adapter), v).reshape(w.getShape());
            v.close();
            weight.set(Ops.ownedCopy(next, w.getManager(), w.getDataType()));
        } finally {
            JniUtils.setGradMode(grad);
        }
    }

    @Override
    public void removeAdapter(String adapter) {
        if (indices.containsKey(adapter)) { // a merged adapter stays in the weights (mergeAndUnload), as IA3's
            merged.remove(adapter);
            indices.remove(adapter).close();
            originals.remove(adapter).close();
            unregister(key(adapter)).array().close();
        }
    }
}
