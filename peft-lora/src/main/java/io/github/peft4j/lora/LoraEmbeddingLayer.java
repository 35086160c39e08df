package io.github.peft4j.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import io.github.peft4j.PeftException;
import io.github.peft4j.lora.dora.DoraMagnitude;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.Layer;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.RowGroups;
import io.github.peft4j.peft.Targets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * LoRA on an embedding (HF PEFT 0.21 {@code tuners/lora/layer.py} {@code Embedding}): for every active, unmerged
 * adapter, {@code y += embedding(ids, Aᵀ) Bᵀ · s} with {@code lora_embedding_A (r, vocab)} and
 * {@code lora_embedding_B (dim, r)}, saved without a {@code .weight} suffix. As in HF, the adapter's dropout is not
 * applied to embeddings, mixed-adapter batches run each row with its own adapter, and merging adds
 * {@code (B A)ᵀ · s} to the {@code (vocab, dim)} weight. Only the lookup goes through this layer: a head tied to the
 * embedding (GPT-2, tied Llama/Qwen2) keeps reading the base weight, until a merge writes into that shared weight.
 *
 * <p>A DoRA adapter holds a magnitude {@code (dim)}: {@code y = g·base + g·embedding(ids, Aᵀ) Bᵀ · s} with
 * {@code g = m / ‖Wᵀ + s·BA‖_row} (the norm over the vocabulary, detached), and merging writes {@code g ⊙ (W + ΔW)}.
 */
public final class LoraEmbeddingLayer extends AdapterLayer implements Scalable {
    private final Layer base;
    private final Map<String, Entry> adapters = new LinkedHashMap<>();
    private final MergeOrder merges = new MergeOrder();
    private final int paddingIdx;
    /** {@code (vocab, 1)}: 1 except 0 at {@code padding_idx} (lazily made, per dtype of the first call). */
    private NDArray keepRows;

    /** One adapter's state on this layer. */
    private static final class Entry {
        final Param a;
        final Param b;
        final double initialScaling;
        /** The scale now ({@link Scalable}): {@code initialScaling} unless changed. */
        double scaling;
        DoraMagnitude dora;

        Entry(Param a, Param b, double scaling) {
            this.a = a;
            this.b = b;
            this.scaling = scaling;
            this.initialScaling = scaling;
        }
    }

    /**
     * @param base the embedding to adapt (an {@link Embedding}, or another method's wrapper around one)
     * @param state the shared active-adapter state
     */
    public LoraEmbeddingLayer(Layer base, AdapterState state) {
        this(base, state, -1);
    }

    /**
     * @param base the embedding to adapt (an {@link Embedding}, or another method's wrapper around one)
     * @param state the shared active-adapter state
     * @param paddingIdx the base embedding's {@code padding_idx} (transformers sets it from {@code pad_token_id} on
     *     Llama's and BERT's word embeddings), or -1: as {@code F.embedding(..., padding_idx)} in HF's LoRA lookup,
     *     that row of {@code Aᵀ} gets no gradient
     */
    public LoraEmbeddingLayer(Layer base, AdapterState state, int paddingIdx) {
        super("base_layer", (Module) base, state);
        this.base = base;
        this.paddingIdx = paddingIdx;
    }

    /** @return the wrapped embedding's weight {@code (vocab, dim)}; an error where another wrapper sits in between */
    private Param embeddingWeight() {
        if (!(base instanceof Embedding e)) {
            throw new PeftException("LoRA cannot merge into (or take DoRA norms of) a " + base.getClass().getSimpleName()
                    + ": it is not an embedding with its own weight");
        }
        return e.weight();
    }

    /**
     * Adds an adapter, initialised as HF PEFT: {@code init} true (or "gaussian") gives zero A and B ~ N(0, 1), so the
     * adapter starts as a no-op; false gives both ~ N(0, 1).
     *
     * @param name the adapter name
     * @param r the rank
     * @param scaling the update's scale
     * @param init {@code init_lora_weights}
     * @param dora {@code use_dora}
     */
    public void addAdapter(String name, int r, double scaling, Object init, boolean dora) {
        if (adapters.containsKey(name)) {
            throw new PeftException("LoRA adapter '" + name + "' already on this layer");
        }
        if (dora) {
            embeddingWeight(); // DoRA needs the embedding's own weight
        }
        if (!(Targets.innermost((Module) base) instanceof Embedding inner)) {
            throw new PeftException("LoRA embedding layer over a " + base.getClass().getSimpleName() + ": no embedding inside");
        }
        Param w = inner.weight();
        NDManager m = w.array().getManager();
        long vocab = w.shape().get(0);
        long dim = w.shape().get(1);
        DataType dt = DataType.FLOAT32;
        NDArray a = Boolean.FALSE.equals(init) ? m.randomNormal(0f, 1f, new Shape(r, vocab), dt) : m.zeros(new Shape(r, vocab), dt);
        NDArray b = m.randomNormal(0f, 1f, new Shape(dim, r), dt);
        Entry e = new Entry(register("lora_embedding_A." + name, new Param(a)), register("lora_embedding_B." + name, new Param(b)),
                scaling);
        if (dora) {
            try (NDArray delta = scaledBa(e, dt)) {
                NDArray m0 = DoraMagnitude.initial(weightOutIn(dt), delta);
                e.dora = new DoraMagnitude(register(DoraMagnitude.PREFIX + "." + name + ".weight", new Param(m0)));
            }
        }
        adapters.put(name, e);
    }

    /** The weight seen as DoRA's {@code (out, in)} = {@code (dim, vocab)}, in a dtype, never on a gradient path. */
    private NDArray weightOutIn(DataType dt) {
        NDArray w = embeddingWeight().array();
        return (w.getDataType() == dt ? w : w.toType(dt, false)).transpose();
    }

    /** {@code s · B A} {@code (dim, vocab)}, detached. */
    private static NDArray scaledBa(Entry e, DataType dt) {
        NDArray a = e.a.array().stopGradient();
        NDArray b = e.b.array().stopGradient();
        if (a.getDataType() != dt) {
            a = a.toType(dt, false);
            b = b.toType(dt, false);
        }
        NDArray ba = b.matMul(a);
        return ba.mul(Ops.scalar(ba, e.scaling));
    }

    @Override
    public NDArray forward(NDArray ids) {
        NDArray y = base.forward(ids);
        DataType dt = y.getDataType();
        RowGroups groups = rowGroups(ids);
        if (groups != null) { // each row with its own adapter, as HF's Embedding._mixed_batch_forward
            refuseDoraRows(groups.names());
            NDArray d = groups.map(ids, (n, rows) -> adapters.containsKey(n) ? lookup(adapters.get(n), rows, dt) : null);
            return d == null ? y : y.add(d);
        }
        for (Map.Entry<String, Entry> me : adapters.entrySet()) {
            Entry e = me.getValue();
            if (merges.contains(me.getKey()) || !state.isActive(me.getKey())) {
                continue;
            }
            NDArray lora = lookup(e, ids, y.getDataType());
            if (e.dora == null) {
                y = y.add(lora);
            } else {
                NDArray g = e.dora.scale(weightOutIn(y.getDataType()), scaledBa(e, y.getDataType()));
                y = y.add(DoraMagnitude.term(g, y, lora)); // HF: g·result + g·lora·s
            }
        }
        return y;
    }

    private void refuseDoraRows(List<String> rowAdapters) {
        for (String n : rowAdapters) {
            Entry e = adapters.get(n);
            if (e != null && e.dora != null) {
                throw new PeftException("mixed-adapter batch: LoRA adapter '" + n + "' uses DoRA (use_dora), which cannot"
                        + " run per row (HF PEFT 0.21 refuses adapter_names= with DoRA too); run its rows in a batch of their own");
            }
        }
    }

    /** {@code embedding(ids, Aᵀ) Bᵀ · s}; the {@code padding_idx} row of {@code Aᵀ} is looked up without gradient. */
    private NDArray lookup(Entry e, NDArray ids, DataType dt) {
        // computed in fp32 and cast to the compute dtype at the end, as autocast keeps embedding lookups in fp32: in
        // fp16 the scaled gradient of the looked-up table (a sum over every position using a row) overflows
        NDArray a = e.a.array();
        NDArray b = e.b.array();
        NDArray table = a.transpose();
        if (paddingIdx >= 0) { // same values (x·1 + x·0 = x), no gradient into the padding row
            NDArray keep = keepRows(table);
            NDArray drop = Ops.scalar(keep, 1.0).sub(keep);
            table = table.mul(keep).add(table.stopGradient().mul(drop));
        }
        NDArray afterA = ai.djl.nn.core.Embedding.embedding(ids, table, SparseFormat.DENSE).head();
        NDArray out = afterA.matMul(b.transpose());
        return Ops.cast(out.mul(Ops.scalar(out, e.scaling)), dt);
    }

    private NDArray keepRows(NDArray table) {
        if (keepRows == null || keepRows.getDataType() != table.getDataType()) {
            float[] v = new float[(int) table.getShape().get(0)];
            java.util.Arrays.fill(v, 1f);
            if (paddingIdx < v.length) {
                v[paddingIdx] = 0f;
            }
            NDArray k = Ops.owned(embeddingWeightManager(), v, new Shape(v.length, 1)).toType(table.getDataType(), false);
            ai.djl.ndarray.NDScope.unregister(k);
            keepRows = k;
        }
        return keepRows;
    }

    private NDManager embeddingWeightManager() {
        return ((Embedding) Targets.innermost((Module) base)).weight().array().getManager();
    }

    /**
     * The update an adapter makes to the embedding weight: {@code (B A)ᵀ · s}, {@code (vocab, dim)}.
     *
     * @param name the adapter name
     * @return the delta in the weight's dtype
     */
    public NDArray deltaWeight(String name) {
        Entry e = entry(name);
        NDArray d = e.b.array().matMul(e.a.array()).transpose();
        d = d.mul(Ops.scalar(d, e.scaling));
        return d.toType(embeddingWeight().array().getDataType(), false);
    }

    private Entry entry(String name) {
        Entry e = adapters.get(name);
        if (e == null) {
            throw new PeftException("no LoRA adapter '" + name + "' on this embedding; it has " + adapters.keySet());
        }
        return e;
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    @Override
    public boolean canMerge() {
        return base instanceof Embedding;
    }

    @Override
    public void merge(String name) {
        entry(name);
        merges.merge(name, weights);
    }

    @Override
    public void unmerge(String name) {
        entry(name);
        merges.unmerge(name, weights);
    }

    /** {@code W + ΔW} for LoRA, {@code g ⊙ (W + ΔW)} (g along the embedding dimension) for DoRA. */
    private final MergeOrder.Weights weights = new LoraMergeRule() {
        @Override
        public NDArray weight() {
            return embeddingWeight().array();
        }

        @Override
        DoraMagnitude dora(String adapter) {
            return adapters.get(adapter).dora;
        }

        @Override
        NDArray deltaWeight(String adapter) {
            return LoraEmbeddingLayer.this.deltaWeight(adapter);
        }

        @Override
        boolean storedInOut() {
            return true; // the (vocab, dim) table is DoRA's (out, in) = (dim, vocab) transposed
        }
    };

    @Override
    public boolean isMerged(String name) {
        entry(name);
        return merges.contains(name);
    }

    /** HF's key for the magnitude has no {@code .weight}. */
    @Override
    public String savedName(String local, String adapter) {
        return DoraMagnitude.savedName(super.savedName(local, adapter));
    }

    @Override
    public double scaling(String adapter) {
        return entry(adapter).scaling;
    }

    @Override
    public double initialScaling(String adapter) {
        return entry(adapter).initialScaling;
    }

    @Override
    public void setScaling(String adapter, double scaling) {
        var l = entry(adapter);
        if (merges.contains(adapter)) {
            throw new PeftException(Scalable.mergedError(adapter));
        }
        l.scaling = scaling;
    }

    @Override
    public java.util.List<String> activeHere() {
        return adapters.keySet().stream().filter(state::isActive).toList();
    }

    @Override
    public boolean has(String adapter) {
        return adapters.containsKey(adapter);
    }

    @Override
    public Set<String> adapterNames() {
        return adapters.keySet();
    }

    /** Removes an adapter; a merged adapter's update stays in the weight (as HF PEFT's unload). */
    @Override
    public void removeAdapter(String name) {
        Entry e = adapters.remove(name);
        if (e != null) {
            unregister("lora_embedding_A." + name);
            unregister("lora_embedding_B." + name);
            merges.forget(name);
            e.a.array().close();
            e.b.array().close();
            if (e.dora != null) {
                unregister(DoraMagnitude.PREFIX + "." + name + ".weight");
                e.dora.magnitude().array().close();
                e.dora.close();
            }
        }
    }
}
