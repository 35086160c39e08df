package io.github.peft4j.lora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.DenseWeights;
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.RowGroups;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * LoRA on a dense projection (HF {@code tuners/lora/layer.py} {@code Linear}): for every active, unmerged
 * adapter, {@code y += B(A(dropout(x))) * scaling} with {@code A (r, in)}, {@code B (out, r)}. Merging adds
 * {@code B A * scaling} to the base weight, transposed for GPT-2's {@code (in, out)} Conv1D layout.
 */
public final class LoraLayer extends AdapterLayer implements Projection {
    private final Projection base;
    private final Map<String, Lora> adapters = new LinkedHashMap<>();

    /** One adapter's state on this layer. */
    private static final class Lora {
        final Param a;
        final Param b;
        final double scaling;
        final Dropout dropout;
        boolean merged;

        Lora(Param a, Param b, double scaling, Dropout dropout) {
            this.a = a;
            this.b = b;
            this.scaling = scaling;
            this.dropout = dropout;
        }
    }

    /**
     * @param base the projection to adapt
     * @param state the shared active-adapter state
     */
    public LoraLayer(Projection base, AdapterState state) {
        super("base_layer", (Module) base, state);
        this.base = base;
    }

    /**
     * Adds an adapter, initialised as HF PEFT: {@code init} true gives Kaiming-uniform A (bound
     * {@code 1/sqrt(in)}) and zero B; "gaussian" gives A ~ N(0, 1/r) and zero B; false gives both
     * Kaiming-uniform (as {@code nn.Linear}'s default), so the adapter changes outputs at once.
     *
     * @param name the adapter name
     * @param r the rank
     * @param scaling the update's scale
     * @param dropout dropout probability on the adapter input
     * @param init {@code init_lora_weights}
     */
    public void addAdapter(String name, int r, double scaling, double dropout, Object init) {
        if (adapters.containsKey(name)) {
            throw new PeftException("LoRA adapter '" + name + "' already on this layer");
        }
        NDManager m = base.manager();
        DataType dt = DataType.FLOAT32; // adapter master weights stay fp32 (mixed precision keeps them so)
        long in = base.inFeatures();
        long out = base.outFeatures();
        NDArray a;
        NDArray b;
        if ("gaussian".equals(init)) {
            a = m.randomNormal(0f, (float) (1.0 / r), new Shape(r, in), dt);
            b = m.zeros(new Shape(out, r), dt);
        } else {
            float bound = (float) (1.0 / Math.sqrt(in));
            a = m.randomUniform(-bound, bound, new Shape(r, in), dt);
            float boundB = (float) (1.0 / Math.sqrt(r));
            b = Boolean.FALSE.equals(init) ? m.randomUniform(-boundB, boundB, new Shape(out, r), dt) : m.zeros(new Shape(out, r), dt);
        }
        Param pa = register("lora_A." + name + ".weight", new Param(a));
        Param pb = register("lora_B." + name + ".weight", new Param(b));
        Dropout d = add("lora_dropout." + name, new Dropout((float) dropout));
        adapters.put(name, new Lora(pa, pb, scaling, d));
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray y = base.forward(x);
        RowGroups groups = rowGroups(x);
        if (groups != null) { // a mixed-adapter batch: each adapter's term on its own rows
            NDArray d = groups.map(x, (n, rows) -> adapters.containsKey(n) ? delta(adapters.get(n), rows) : null);
            return d == null ? y : y.add(d);
        }
        for (Map.Entry<String, Lora> e : adapters.entrySet()) {
            Lora l = e.getValue();
            if (l.merged || !state.isActive(e.getKey())) {
                continue;
            }
            y = y.add(delta(l, x));
        }
        return y;
    }

    /** {@code B(A(dropout(x))) * scaling}. */
    private static NDArray delta(Lora l, NDArray x) {
        NDArray h = l.dropout.forward(x);
        NDArray a = l.a.array();
        NDArray b = l.b.array();
        if (h.getDataType() != a.getDataType()) {
            a = a.toType(h.getDataType(), false);
            b = b.toType(h.getDataType(), false);
        }
        NDArray delta = Ops.linear(Ops.linear(h, a, null), b, null);
        return delta.mul(Ops.scalar(delta, l.scaling));
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    /**
     * The update an adapter makes to the stored weight: {@code B A * scaling}, as {@code (out, in)} or,
     * for fan-in-fan-out layers, {@code (in, out)}.
     *
     * @param name the adapter name
     * @return the delta in the base weight's dtype
     */
    public NDArray deltaWeight(String name) {
        Lora l = lora(name);
        NDArray d = l.b.array().matMul(l.a.array()).mul(Ops.scalar(l.a.array(), l.scaling));
        if (denseBase().fanInFanOut()) {
            d = d.transpose();
        }
        return d.toType(denseBase().weight().array().getDataType(), false);
    }

    private Lora lora(String name) {
        Lora l = adapters.get(name);
        if (l == null) {
            throw new PeftException("no LoRA adapter '" + name + "' on this layer; it has " + adapters.keySet());
        }
        return l;
    }

    /** @return the base's dense weights, or an error where the base has none (a quantised projection, a wrapper) */
    private DenseWeights denseBase() {
        DenseWeights d = base.dense();
        if (d == null) {
            throw new PeftException("LoRA cannot merge into a " + ((Module) base).getClass().getSimpleName()
                    + ": it exposes no dense weights");
        }
        return d;
    }

    /** @return null: the sum of the base and LoRA terms has no dense weights of its own to merge another method into */
    @Override
    public DenseWeights dense() {
        return null;
    }

    @Override
    public long inFeatures() {
        return base.inFeatures();
    }

    @Override
    public long outFeatures() {
        return base.outFeatures();
    }

    @Override
    public NDManager manager() {
        return base.manager();
    }

    @Override
    public boolean canMerge() {
        return base.dense() != null;
    }

    @Override
    public void merge(String name) {
        Lora l = lora(name);
        if (l.merged) {
            return;
        }
        NDArray w = denseBase().weight().array();
        try (NDArray delta = deltaWeight(name); NDArray merged = w.add(delta)) {
            // safe merge: check the result before it replaces the base weight
            if (merged.isNaN().logicalOr(merged.isInfinite()).any().getBoolean()) {
                throw new PeftException("merging LoRA adapter '" + name + "' gives non-finite weights; the base weight is unchanged");
            }
            merged.copyTo(w);
        }
        l.merged = true;
    }

    @Override
    public void unmerge(String name) {
        Lora l = lora(name);
        if (!l.merged) {
            return;
        }
        try (NDArray delta = deltaWeight(name)) {
            denseBase().weight().array().subi(delta);
        }
        l.merged = false;
    }

    /**
     * @param name an adapter name
     * @return whether it is merged into the base weight
     */
    @Override
    public boolean isMerged(String name) {
        return lora(name).merged;
    }

    @Override
    public Set<String> adapterNames() {
        return adapters.keySet();
    }

    /** Removes an adapter; a merged adapter's update stays in the base weight (as HF PEFT's unload). */
    @Override
    public void removeAdapter(String name) {
        Lora l = adapters.remove(name);
        if (l != null) {
            unregister("lora_A." + name + ".weight");
            unregister("lora_B." + name + ".weight");
            removeChild("lora_dropout." + name);
            l.a.array().close();
            l.b.array().close();
        }
    }
}
