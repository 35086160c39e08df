package io.github.peft4j.lora.adalora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.lora.MergeOrder;
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ProjectionWrapper;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * AdaLoRA on a dense projection (HF PEFT 0.21 {@code tuners/adalora/layer.py} {@code SVDLinear}): for every active,
 * unmerged adapter {@code y += (dropout(x) (A ⊙ E)ᵀ Bᵀ) · scaling / (ranknum + 1e-5)} with {@code A = lora_A (r, in)},
 * {@code E = lora_E (r, 1)}, {@code B = lora_B (out, r)}; {@code scaling = lora_alpha} and {@code ranknum = init_r},
 * which stays {@code init_r} when the adapter is cut to fewer ranks (so pruning never changes the scale). Parameters
 * are HF's in-memory names without {@code .weight} ({@code lora_A.default}), saved as {@code lora_A}. Merging adds
 * {@code B (A ⊙ E) · scaling / (ranknum + 1e-5)}, transposed for GPT-2's {@code (in, out)} Conv1D layout. HF's
 * {@code SVDLinear} does not take {@code adapter_names=}, so this layer does not run per row in a mixed batch.
 */
public final class AdaLoraLayer extends ProjectionWrapper {
    private final Projection base;
    private final Map<String, Svd> adapters = new LinkedHashMap<>();
    private final MergeOrder merges = new MergeOrder();

    /** One adapter's triplets on this layer. */
    static final class Svd {
        final Param a;
        final Param e;
        final Param b;
        final double scaling;
        /** {@code float32(init_r) + 1e-5} in float32, as HF's {@code ranknum + 1e-5}. */
        final double rankDenominator;
        final Dropout dropout;

        Svd(Param a, Param e, Param b, double scaling, int ranknum, Dropout dropout) {
            this.a = a;
            this.e = e;
            this.b = b;
            this.scaling = scaling;
            this.rankDenominator = (float) ranknum + 1e-5f;
            this.dropout = dropout;
        }

        /** @return the current number of ranks (rows of A) */
        int rank() {
            return (int) a.shape().get(0);
        }
    }

    /**
     * @param base the projection to adapt
     * @param state the shared active-adapter state
     */
    public AdaLoraLayer(Projection base, AdapterState state) {
        super(base, state);
        this.base = base;
    }

    /**
     * Adds an adapter at rank {@code r}, initialised as HF: {@code init} true gives E = 0 and A, B ~ N(0, 0.02);
     * false gives all three ~ N(0, 1).
     *
     * @param name the adapter name
     * @param r {@code init_r}
     * @param scaling {@code lora_alpha} (or {@code r} when alpha is 0 or less)
     * @param dropout dropout probability on the adapter input
     * @param init {@code init_lora_weights}
     */
    public void addAdapter(String name, int r, double scaling, double dropout, boolean init) {
        if (adapters.containsKey(name)) {
            throw new PeftException("AdaLoRA adapter '" + name + "' already on this layer");
        }
        NDManager m = base.manager();
        DataType dt = DataType.FLOAT32; // trainable leaves stay fp32; forward casts them to the compute dtype
        long in = base.inFeatures();
        long out = base.outFeatures();
        float std = init ? 0.02f : 1f;
        NDArray a = m.randomNormal(0f, std, new Shape(r, in), dt);
        NDArray e = init ? m.zeros(new Shape(r, 1), dt) : m.randomNormal(0f, 1f, new Shape(r, 1), dt);
        NDArray b = m.randomNormal(0f, std, new Shape(out, r), dt);
        Param pa = register("lora_A." + name, new Param(a));
        Param pe = register("lora_E." + name, new Param(e));
        Param pb = register("lora_B." + name, new Param(b));
        Dropout d = add("lora_dropout." + name, new Dropout((float) dropout));
        adapters.put(name, new Svd(pa, pe, pb, scaling, r, d));
    }

    /**
     * @param name an adapter name
     * @return its triplets here
     */
    Svd svd(String name) {
        Svd s = adapters.get(name);
        if (s == null) {
            throw new PeftException("no AdaLoRA adapter '" + name + "' on this layer; it has " + adapters.keySet());
        }
        return s;
    }

    /**
     * Cuts an adapter to the kept ranks (HF's {@code resize_modules_by_rank_pattern}): A and E keep the kept rows, B
     * the kept columns; the scale keeps {@code init_r}. A mask that keeps every rank changes nothing.
     *
     * @param name the adapter
     * @param keep one flag per current rank
     */
    void resize(String name, boolean[] keep) {
        Svd s = svd(name);
        if (keep.length != s.rank()) {
            throw new PeftException("AdaLoRA adapter '" + name + "': rank_pattern has " + keep.length
                    + " entries, the layer has rank " + s.rank());
        }
        int kept = 0;
        for (boolean k : keep) {
            kept += k ? 1 : 0;
        }
        if (kept == keep.length) {
            return;
        }
        s.a.set(ownedRows(s.a.array(), keep));
        s.e.set(ownedRows(s.e.array(), keep));
        try (NDArray bt = s.b.array().stopGradient().transpose().duplicate(); NDArray cut = keepRows(bt, keep)) {
            NDArray b = cut.transpose().duplicate();
            ai.djl.ndarray.NDScope.unregister(b);
            s.b.set(b);
        }
    }

    /**
     * The kept rows of a 2-d fp32 array, as a new array of the same manager (zero rows allowed).
     *
     * @param x the array (read, not changed)
     * @param keep one flag per row
     * @return the kept rows
     */
    static NDArray keepRows(NDArray x, boolean[] keep) {
        long cols = x.getShape().get(1);
        int kept = 0;
        for (boolean k : keep) {
            kept += k ? 1 : 0;
        }
        if (kept == 0) {
            return x.getManager().zeros(new Shape(0, cols), x.getDataType());
        }
        float[] all = x.toFloatArray();
        float[] out = new float[(int) (kept * cols)];
        int at = 0;
        for (int i = 0; i < keep.length; i++) {
            if (keep[i]) {
                System.arraycopy(all, (int) (i * cols), out, at, (int) cols);
                at += (int) cols;
            }
        }
        return Ops.owned(x.getManager(), out, new Shape(kept, cols));
    }

    /** {@link #keepRows} taken out of any open step scope: the result becomes a parameter value. */
    private static NDArray ownedRows(NDArray x, boolean[] keep) {
        NDArray made = keepRows(x, keep);
        ai.djl.ndarray.NDScope.unregister(made);
        return made;
    }

    @Override
    public NDArray forward(NDArray input) {
        NDArray x = base.sharedInput(input);
        NDArray y = base.forward(x);
        if (rowGroups(x) != null) {
            // a mixed-adapter batch: PeftModel admits only row-routed adapters there, which AdaLoRA is not, so no
            // adapter of this layer is named by a row
            return y;
        }
        for (Map.Entry<String, Svd> en : adapters.entrySet()) {
            Svd s = en.getValue();
            if (merges.contains(en.getKey()) || !state.isActive(en.getKey()) || s.rank() == 0) {
                continue;
            }
            y = y.add(delta(s, x));
        }
        return y;
    }

    /** {@code (dropout(x) (A ⊙ E)ᵀ Bᵀ) · scaling / (ranknum + 1e-5)}, HF's order of operations. */
    private static NDArray delta(Svd s, NDArray x) {
        NDArray h = s.dropout.forward(x);
        DataType dt = h.getDataType();
        NDArray ae = Ops.cast(s.a.array(), dt).mul(Ops.cast(s.e.array(), dt)); // (r, in) ⊙ (r, 1)
        NDArray b = Ops.cast(s.b.array(), dt);
        NDArray d = ai.djl.nn.core.Linear.linear(ai.djl.nn.core.Linear.linear(h, ae).head(), b).head();
        return d.mul(Ops.scalar(d, s.scaling)).div(Ops.scalar(d, s.rankDenominator));
    }

    /**
     * The update an adapter makes to the stored weight: {@code B (A ⊙ E) · scaling / (ranknum + 1e-5)}, as
     * {@code (out, in)}, or {@code (in, out)} for fan-in-fan-out layers.
     *
     * @param name the adapter name
     * @return the delta in the base weight's dtype (detached)
     */
    public NDArray deltaWeight(String name) {
        Svd s = svd(name);
        NDArray a = s.a.array().stopGradient();
        NDArray ae = a.mul(s.e.array().stopGradient());
        NDArray d = s.b.array().stopGradient().matMul(ae);
        d = d.mul(Ops.scalar(d, s.scaling)).div(Ops.scalar(d, s.rankDenominator));
        if (denseBase().fanInFanOut()) {
            d = d.transpose();
        }
        return Ops.cast(d, denseBase().weight().array().getDataType()); // detached: a value cast, no toType needed
    }

    private final MergeOrder.Weights weights = new MergeOrder.Weights() {
        @Override
        public NDArray weight() {
            return denseBase().weight().array();
        }

        @Override
        public boolean rescales(String adapter) {
            return false;
        }

        @Override
        public NDArray merged(String adapter, NDArray clean) {
            return weight().add(deltaWeight(adapter));
        }

        @Override
        public NDArray unmerged(String adapter) {
            return weight().sub(deltaWeight(adapter));
        }
    };

    @Override
    public void merge(String name) {
        svd(name);
        merges.merge(name, weights);
    }

    @Override
    public void unmerge(String name) {
        svd(name);
        merges.unmerge(name, weights);
    }

    @Override
    public boolean isMerged(String name) {
        svd(name);
        return merges.contains(name);
    }

    @Override
    public Set<String> adapterNames() {
        return adapters.keySet();
    }

    /** Removes an adapter; a merged adapter's update stays in the base weight (as HF PEFT's unload). */
    @Override
    public void removeAdapter(String name) {
        Svd s = adapters.remove(name);
        if (s != null) {
            unregister("lora_A." + name);
            unregister("lora_E." + name);
            unregister("lora_B." + name);
            removeChild("lora_dropout." + name);
            merges.forget(name);
            s.a.array().close();
            s.e.array().close();
            s.b.array().close();
        }
    }
}
