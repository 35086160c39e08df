package io.github.peft4j.adapters;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.ProjectionWrapper;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.RowGroups;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * HF PEFT's IA3 {@code Linear} layer over a {@link Projection} (linear or GPT-2 Conv1D), kept as
 * {@code base_layer}. Each adapter owns a vector {@code ia3_l.<adapter>}: shape {@code (out, 1)} to scale the
 * output, {@code y = (W x + b) ⊙ l} (bias included), or {@code (1, in)} for a feed-forward target, to scale
 * the input, {@code y = W (x ⊙ l) + b}. The vectors of several active adapters multiply. Merged adapters
 * are folded into the base weight (and, for output scaling, the bias) and skipped in the forward pass.
 */
public final class IA3Layer extends ProjectionWrapper {
    /** Local parameter name prefix; saved as {@code <module path>.ia3_l}. */
    public static final String PREFIX = "ia3_l";
    /** HF's tolerance added to {@code l} before dividing on unmerge. */
    public static final double UNMERGE_EPS = 1e-8;
    private final Projection projection;
    private final Map<String, Boolean> feedforward = new LinkedHashMap<>();
    private final Set<String> merged = new LinkedHashSet<>();

    /**
     * @param base the projection in the slot
     * @param state the shared active-adapter state
     */
    public IA3Layer(Projection base, AdapterState state) {
        super(base, state);
        this.projection = base;
    }

    /**
     * Adds an adapter's vector, created in fp32 in the base weight's manager (a trainable leaf; the forward pass
     * casts it to the compute dtype, so an fp16 model trains it in fp32 as HF's {@code autocast_adapter_dtype}).
     *
     * @param adapter the adapter name
     * @param isFeedforward true to scale the input ({@code (1, in)}), false for the output ({@code (out, 1)})
     * @param initOnes true for ones (identity), false for standard-normal values (HF's
     *     {@code init_ia3_weights=False})
     * @param path the module path, for messages
     */
    public void addAdapter(String adapter, boolean isFeedforward, boolean initOnes, String path) {
        if (feedforward.containsKey(adapter)) {
            throw new PeftException("module '" + path + "' already has an IA3 vector for adapter '" + adapter + "'");
        }
        NDManager m = projection.manager();
        Shape shape = isFeedforward ? new Shape(1, projection.inFeatures()) : new Shape(projection.outFeatures(), 1);
        NDArray l = initOnes ? m.ones(shape, DataType.FLOAT32) : m.randomNormal(shape, DataType.FLOAT32);
        register(key(adapter), new Param(l));
        feedforward.put(adapter, isFeedforward);
    }

    private static String key(String adapter) {
        return PREFIX + "." + adapter;
    }

    /**
     * @param adapter an adapter on this layer
     * @return its vector {@code ia3_l}
     */
    public Param vector(String adapter) {
        Param p = localParameters().get(key(adapter));
        if (p == null) {
            throw new PeftException("IA3 layer has no adapter '" + adapter + "'; it has " + feedforward.keySet());
        }
        return p;
    }

    /**
     * @param adapter an adapter on this layer
     * @return true if it scales the input
     */
    public boolean isFeedforward(String adapter) {
        vector(adapter);
        return feedforward.get(adapter);
    }

    /**
     * @param adapter an adapter name
     * @return whether it is folded into the base weights now
     */
    @Override
    public boolean isMerged(String adapter) {
        return merged.contains(adapter);
    }

    @Override
    public NDArray forward(NDArray x) {
        RowGroups groups = rowGroups(x);
        if (groups != null) { // a mixed-adapter batch: each row scaled by its own adapter's vector
            NDArray inScale = rowScale(groups, x, true);
            NDArray y = base().forward(inScale == null ? x : x.mul(inScale));
            NDArray outScale = rowScale(groups, y, false);
            return outScale == null ? y : y.mul(outScale);
        }
        NDArray inScale = null;
        NDArray outScale = null;
        for (Map.Entry<String, Boolean> e : feedforward.entrySet()) {
            String a = e.getKey();
            if (!state.isActive(a) || merged.contains(a)) {
                continue;
            }
            NDArray l = Ops.cast(vector(a).array(), x.getDataType()).reshape(-1); // fp32 leaf, cast in forward
            if (e.getValue()) {
                inScale = inScale == null ? l : inScale.mul(l);
            } else {
                outScale = outScale == null ? l : outScale.mul(l);
            }
        }
        NDArray y = base().forward(inScale == null ? x : x.mul(inScale));
        return outScale == null ? y : y.mul(outScale);
    }

    /** Per-row scales {@code [B, 1.., features]} broadcasting over {@code like}, or null where no row has one. */
    private NDArray rowScale(RowGroups groups, NDArray like, boolean input) {
        long features = like.getShape().get(like.getShape().dimension() - 1);
        NDArray ones = like.getManager().ones(new ai.djl.ndarray.types.Shape(features), DataType.FLOAT32);
        NDArray rows = groups.perRow(ones, n -> feedforward.containsKey(n) && feedforward.get(n) == input
                ? vector(n).array().reshape(-1) : null);
        if (rows == null) {
            return null;
        }
        long[] dims = new long[like.getShape().dimension()];
        java.util.Arrays.fill(dims, 1);
        dims[0] = like.getShape().get(0);
        dims[dims.length - 1] = features;
        return Ops.cast(rows.reshape(new ai.djl.ndarray.types.Shape(dims)), like.getDataType()); // fp32 leaves, cast in forward
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    @Override
    public Set<String> adapterNames() {
        return Collections.unmodifiableSet(feedforward.keySet());
    }


    /**
     * Folds an adapter into the base weights: output scaling multiplies the rows of {@code W} (the columns
     * of a Conv1D's {@code (in, out)} weight) and the bias by {@code l}; input scaling multiplies the columns
     * of {@code W} (rows of a Conv1D weight), bias unchanged. Merging a merged adapter does nothing.
     *
     * @param adapter the adapter name
     */
    @Override
    public void merge(String adapter) {
        if (merged.contains(adapter)) {
            return;
        }
        NDArray l = vector(adapter).array().stopGradient();
        try {
            denseBase().weight().array().muli(weightFactor(adapter, l));
            if (!feedforward.get(adapter) && denseBase().bias() != null) {
                denseBase().bias().array().muli(l.reshape(-1));
            }
        } finally {
            closeDetached(l, adapter);
        }
        merged.add(adapter);
    }

    /**
     * Divides a merged adapter out of the base weights again, by {@code l + 1e-8} as HF PEFT does (so a zero
     * entry does not produce infinities; the result is then inexact for that entry, as in HF).
     *
     * @param adapter the adapter name
     */
    @Override
    public void unmerge(String adapter) {
        if (!merged.contains(adapter)) {
            return;
        }
        NDArray l = vector(adapter).array().stopGradient();
        try {
            NDArray lEps = l.add(Ops.scalar(l, UNMERGE_EPS));
            denseBase().weight().array().divi(weightFactor(adapter, lEps));
            if (!feedforward.get(adapter) && denseBase().bias() != null) {
                denseBase().bias().array().divi(lEps.reshape(-1));
            }
            lEps.close();
        } finally {
            closeDetached(l, adapter);
        }
        merged.remove(adapter);
    }

    /** {@code l} in the stored weight layout: {@code (out, 1)} / {@code (1, in)}, transposed for Conv1D. */
    private NDArray weightFactor(String adapter, NDArray l) {
        return denseBase().fanInFanOut() ? l.transpose() : l;
    }

    private void closeDetached(NDArray detached, String adapter) {
        if (detached != vector(adapter).array()) {
            detached.close();
        }
    }

    @Override
    public void removeAdapter(String adapter) {
        if (feedforward.remove(adapter) != null) {
            merged.remove(adapter);
            Param p = unregister(key(adapter));
            p.array().close();
        }
    }
}
