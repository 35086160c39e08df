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
import io.github.peft4j.peft.ProjectionWrapper;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.RowGroups;
import io.github.peft4j.lora.dora.DoraMagnitude;
import io.github.peft4j.nn.quant.Linear4bit;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * LoRA on a dense projection (HF {@code tuners/lora/layer.py} {@code Linear}): for every active, unmerged
 * adapter, {@code y += B(A(dropout(x))) * scaling} with {@code A (r, in)}, {@code B (out, r)}. Merging adds
 * {@code B A * scaling} to the base weight, transposed for GPT-2's {@code (in, out)} Conv1D layout.
 *
 * <p>A DoRA adapter ({@code use_dora}) also holds a {@link DoraMagnitude} and adds
 * {@code (g − 1)·base + g·B(A(x))·s} as HF PEFT 0.21 does: {@code base} is the running output without the bias
 * (recomputed from {@code dropout(x)} without bias while dropout acts), {@code g = m / ‖W + s·BA‖_row} with the
 * norm detached. DoRA adapters do not run per row in a mixed-adapter batch (HF refuses that too).
 *
 * <p>Over a 4-bit base ({@link Linear4bit}, QLoRA) it works as HF PEFT's {@code bnb.Linear4bit}: DoRA takes the weight
 * norm from the dequantised weight, and merging dequantises, merges, and requantises (the base then differs from the
 * exact merge by the rounding error, logged as a warning).
 */
public final class LoraLayer extends ProjectionWrapper implements Scalable {
    private static final Logger LOG = LoggerFactory.getLogger(LoraLayer.class);
    private final Projection base;
    /** A 4-bit base, or null. */
    private final Linear4bit fourBit;
    /** While merging into a 4-bit base: its dequantised weight, which the merge rules update. */
    private NDArray dequantized;
    private final Map<String, Lora> adapters = new LinkedHashMap<>();
    private final MergeOrder merges = new MergeOrder();

    /** One adapter's state on this layer. */
    private static final class Lora {
        final Param a;
        final Param b;
        final double initialScaling;
        /** The scale now ({@link Scalable}): {@code initialScaling} unless changed. */
        double scaling;
        final Dropout dropout;
        DoraMagnitude dora;

        Lora(Param a, Param b, double scaling, Dropout dropout) {
            this.a = a;
            this.b = b;
            this.scaling = scaling;
            this.initialScaling = scaling;
            this.dropout = dropout;
        }
    }

    /**
     * @param base the projection to adapt
     * @param state the shared active-adapter state
     */
    public LoraLayer(Projection base, AdapterState state) {
        super(base, state);
        this.base = base;
        this.fourBit = base instanceof Linear4bit q ? q : null;
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
        addAdapter(name, r, scaling, dropout, init, false);
    }

    /**
     * Adds an adapter as {@link #addAdapter(String, int, double, double, Object)}; with {@code dora} it also gets
     * a magnitude vector initialised, as HF PEFT, to the row norms of {@code W + scaling·BA}.
     *
     * @param name the adapter name
     * @param r the rank
     * @param scaling the update's scale
     * @param dropout dropout probability on the adapter input
     * @param init {@code init_lora_weights}
     * @param dora {@code use_dora}
     */
    public void addAdapter(String name, int r, double scaling, double dropout, Object init, boolean dora) {
        if (dora && base.dense() == null && fourBit == null) {
            throw new PeftException("DoRA needs the dense weight of the layer it adapts; a "
                    + ((Module) base).getClass().getSimpleName() + " exposes none (a quantised projection or another method's wrapper)");
        }
        if (adapters.containsKey(name)) {
            throw new PeftException("LoRA adapter '" + name + "' already on this layer");
        }
        NDManager m = base.manager();
        DataType dt = DataType.FLOAT32; // trainable leaves stay fp32; forward casts them to the compute dtype
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
        Lora l = new Lora(pa, pb, scaling, d);
        if (dora) {
            try (NDArray delta = scaledBa(l, DataType.FLOAT32); ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                NDArray m0 = DoraMagnitude.initial(weightOutIn(DataType.FLOAT32), delta);
                ai.djl.ndarray.NDScope.unregister(m0);
                l.dora = new DoraMagnitude(register(DoraMagnitude.PREFIX + "." + name + ".weight", new Param(m0)));
            }
        }
        adapters.put(name, l);
    }

    /**
     * @return the base weight as {@code (out, in)} in a dtype (a view or a cast copy, or a 4-bit base's dequantised
     *     copy; never on a gradient path)
     */
    private NDArray weightOutIn(DataType dt) {
        if (fourBit != null) {
            NDArray w = fourBit.dequantize();
            return w.getDataType() == dt ? w : w.toType(dt, false);
        }
        DenseWeights d = denseBase();
        NDArray w = d.weight().array();
        if (w.getDataType() != dt) {
            w = w.toType(dt, false);
        }
        return d.fanInFanOut() ? w.transpose() : w;
    }

    /** {@code scaling · B A} as {@code (out, in)}, detached, in a dtype. */
    private static NDArray scaledBa(Lora l, DataType dt) {
        NDArray a = l.a.array().stopGradient();
        NDArray b = l.b.array().stopGradient();
        if (a.getDataType() != dt) {
            a = a.toType(dt, false);
            b = b.toType(dt, false);
        }
        NDArray ba = b.matMul(a);
        return ba.mul(Ops.scalar(ba, l.scaling));
    }

    @Override
    public NDArray forward(NDArray input) {
        NDArray x = base.sharedInput(input);
        NDArray y = base.forward(x);
        RowGroups groups = rowGroups(x);
        if (groups != null) { // a mixed-adapter batch: each adapter's term on its own rows
            refuseDoraRows(groups.names());
            NDArray d = groups.map(x, (n, rows) -> adapters.containsKey(n) ? delta(adapters.get(n), rows) : null);
            return d == null ? y : y.add(d);
        }
        for (Map.Entry<String, Lora> e : adapters.entrySet()) {
            Lora l = e.getValue();
            if (merges.contains(e.getKey()) || !state.isActive(e.getKey())) {
                continue;
            }
            y = y.add(l.dora == null ? delta(l, x) : doraTerm(l, x, y));
        }
        return y;
    }

    /** As HF PEFT 0.21 ({@code Cannot pass `adapter_names` when DoRA is enabled.}): DoRA adapters do not run per row. */
    private void refuseDoraRows(java.util.List<String> rowAdapters) {
        for (String n : rowAdapters) {
            Lora l = adapters.get(n);
            if (l != null && l.dora != null) {
                throw new PeftException("mixed-adapter batch: LoRA adapter '" + n + "' uses DoRA (use_dora), which cannot"
                        + " run per row (HF PEFT 0.21 refuses adapter_names= with DoRA too); run its rows in a batch of their own");
            }
        }
    }

    /**
     * DoRA's term {@code (g − 1)·base + g·B(A(h))·s}: without dropout (or in eval mode) {@code h = x} and
     * {@code base} is the running output less the bias; with dropout acting, {@code h = dropout(x)} and
     * {@code base = h Wᵀ} (no bias), exactly as HF's {@code DoraLinearVariant.forward}.
     */
    private NDArray doraTerm(Lora l, NDArray x, NDArray running) {
        DataType dt = x.getDataType();
        NDArray w = weightOutIn(dt);
        NDArray g = l.dora.scale(w, scaledBa(l, dt));
        NDArray h;
        NDArray baseOut;
        if (l.dropout.p() == 0f || !l.dropout.isTraining()) {
            h = x;
            Param bias = baseBias();
            baseOut = bias == null ? running : running.sub(Ops.cast(bias.array(), running.getDataType()));
        } else {
            h = l.dropout.forward(x);
            baseOut = ai.djl.nn.core.Linear.linear(h, w).head();
        }
        return DoraMagnitude.term(g, baseOut, loraBranch(l, h));
    }

    /** @return the base layer's bias, or null */
    private Param baseBias() {
        return fourBit != null ? fourBit.bias() : denseBase().bias();
    }

    /** @return whether the base weight is stored {@code (in, out)}: never for a 4-bit base (HF: fan_in_fan_out False) */
    private boolean baseFanInFanOut() {
        return fourBit == null && denseBase().fanInFanOut();
    }

    /** @return whether this layer can merge: into dense weights, or a 4-bit base by requantising */
    @Override
    public boolean canMerge() {
        return fourBit != null || super.canMerge();
    }

    /** {@code B(A(dropout(x))) * scaling}. */
    private static NDArray delta(Lora l, NDArray x) {
        return loraBranch(l, l.dropout.forward(x));
    }

    /** {@code B(A(h)) * scaling}. */
    private static NDArray loraBranch(Lora l, NDArray h) {
        NDArray a = Ops.cast(l.a.array(), h.getDataType()); // fp32 leaves, cast in forward (fp16 compute)
        NDArray b = Ops.cast(l.b.array(), h.getDataType());
        NDArray delta = Ops.linear(Ops.linear(h, a, null), b, null);
        return delta.mul(Ops.scalar(delta, l.scaling));
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    /**
     * The update an adapter makes to the stored weight: {@code B A * scaling}, as {@code (out, in)} or,
     * for fan-in-fan-out layers, {@code (in, out)}. For a DoRA adapter this is HF's {@code get_delta_weight} too:
     * the low-rank part only, without the magnitude's rescaling (see {@link #merge}).
     *
     * @param name the adapter name
     * @return the delta in the base weight's dtype
     */
    public NDArray deltaWeight(String name) {
        Lora l = lora(name);
        NDArray d = l.b.array().matMul(l.a.array()).mul(Ops.scalar(l.a.array(), l.scaling));
        if (baseFanInFanOut()) {
            d = d.transpose();
        }
        return d.toType(fourBit != null ? DataType.FLOAT32 : denseBase().weight().array().getDataType(), false);
    }

    private Lora lora(String name) {
        Lora l = adapters.get(name);
        if (l == null) {
            throw new PeftException("no LoRA adapter '" + name + "' on this layer; it has " + adapters.keySet());
        }
        return l;
    }


    @Override
    public void merge(String name) {
        lora(name);
        if (fourBit == null) {
            merges.merge(name, weights);
        } else if (!merges.contains(name)) {
            LOG.warn("merging LoRA adapter '{}' into a 4-bit layer: its weight is dequantised, merged and requantised,"
                    + " so outputs differ from the unmerged adapter by the rounding error", name);
            throughDequantized(() -> merges.merge(name, weights));
        }
    }

    @Override
    public void unmerge(String name) {
        lora(name);
        if (fourBit == null) {
            merges.unmerge(name, weights);
        } else if (merges.contains(name)) {
            LOG.warn("unmerging LoRA adapter '{}' from a 4-bit layer: the weight is requantised again, so it differs from"
                    + " the weight before the merge by the rounding error", name);
            throughDequantized(() -> merges.unmerge(name, weights));
        }
    }

    /** Runs merge rules on the 4-bit base's dequantised fp32 weight, then requantises it (HF's bnb merge). */
    private void throughDequantized(Runnable rules) {
        dequantized = fourBit.dequantize();
        try {
            rules.run();
            fourBit.requantize(dequantized);
        } finally {
            dequantized.close();
            dequantized = null;
        }
    }

    /** The merge rules of this layer: {@code W + ΔW} for LoRA, {@code g ⊙ (W + ΔW)} for DoRA, in the stored layout. */
    private final MergeOrder.Weights weights = new LoraMergeRule() {
        @Override
        public NDArray weight() {
            return dequantized != null ? dequantized : denseBase().weight().array();
        }

        @Override
        DoraMagnitude dora(String adapter) {
            return adapters.get(adapter).dora;
        }

        @Override
        NDArray deltaWeight(String adapter) {
            return LoraLayer.this.deltaWeight(adapter);
        }

        @Override
        boolean storedInOut() {
            return baseFanInFanOut();
        }
    };

    /**
     * @param name an adapter name
     * @return whether it is merged into the base weight
     */
    @Override
    public boolean isMerged(String name) {
        lora(name);
        return merges.contains(name);
    }

    /**
     * @param name an adapter name
     * @return whether it is a DoRA adapter on this layer
     */
    public boolean isDora(String name) {
        return lora(name).dora != null;
    }

    /** HF's key for the magnitude has no {@code .weight}: {@code lora_magnitude_vector.default.weight} -> {@code lora_magnitude_vector}. */
    @Override
    public String savedName(String local, String adapter) {
        return DoraMagnitude.savedName(super.savedName(local, adapter));
    }

    @Override
    public double scaling(String adapter) {
        return lora(adapter).scaling;
    }

    @Override
    public double initialScaling(String adapter) {
        return lora(adapter).initialScaling;
    }

    @Override
    public void setScaling(String adapter, double scaling) {
        var l = lora(adapter);
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

    /** Removes an adapter; a merged adapter's update stays in the base weight (as HF PEFT's unload). */
    @Override
    public void removeAdapter(String name) {
        Lora l = adapters.remove(name);
        if (l != null) {
            unregister("lora_A." + name + ".weight");
            unregister("lora_B." + name + ".weight");
            removeChild("lora_dropout." + name);
            merges.forget(name);
            l.a.array().close();
            l.b.array().close();
            if (l.dora != null) {
                unregister(DoraMagnitude.PREFIX + "." + name + ".weight");
                l.dora.magnitude().array().close();
                l.dora.close();
            }
        }
    }
}
