package io.github.peft4j.adapters.unipelt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ProjectionWrapper;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * AdapterHub's LoRA on one projection ({@code methods/lora.py}): {@code LoRALinear} ({@code y = W x + (dropout(x) Aᵀ
 * Bᵀ) · s}) and, for GPT-2's fused {@code c_attn}, {@code LoRAMergedLinear}, which holds one LoRA per enabled attention
 * matrix in one {@code A (n·r, in)} and one {@code B (n·out/3, r)} (its grouped 1-d convolution) and adds each to its
 * third of the output. {@code s} is {@code alpha / r}, or with a gate {@code mean_positions(sigmoid(gate(x)))} (one gate
 * output per enabled matrix). Parameters carry AdapterHub's local names: {@code loras.NAME.lora_A},
 * {@code loras.NAME.lora_B}, {@code loras.NAME.gate.weight}, {@code loras.NAME.gate.bias}.
 *
 * <p>This is AdapterHub's LoRA, not HF PEFT's (peft-lora's {@code LoraLayer}): different shapes for fused projections,
 * the gate in place of the scale, no merging while gated (AdapterHub refuses that too), no mixed-adapter rows.
 */
final class HubLoraLayer extends ProjectionWrapper {
    private final Map<String, Lora> adapters = new LinkedHashMap<>();

    private static final class Lora {
        Param a;
        Param b;
        Param gateW;
        Param gateB;
        double scaling;
        Dropout dropout;
        /** the output thirds (or the whole output, {@code parts == 1}) that get an update, in order */
        List<Integer> slices;
        int parts;
        int r;
        Gate.Positions positions;
        Supplier<NDArray> mask;
    }

    HubLoraLayer(Projection base, AdapterState state) {
        super(base, state);
    }

    /**
     * @param name the adapter
     * @param c its LoRA part
     * @param parts 3 for a fused q/k/v projection, else 1
     * @param slices which of the parts get an update (q = 0, k = 1, v = 2 for a fused projection; {0} else)
     * @param positions the gate's positions
     * @param mask the current call's attention mask
     */
    void addAdapter(String name, HubLoraConfig c, int parts, List<Integer> slices, Gate.Positions positions,
            Supplier<NDArray> mask) {
        if (adapters.containsKey(name)) {
            throw new PeftException("AdapterHub LoRA adapter '" + name + "' already on this layer");
        }
        NDManager m = manager();
        long in = inFeatures();
        long out = outFeatures();
        if (out % parts != 0) {
            throw new PeftException("AdapterHub LoRA: a fused projection of " + out + " outputs does not split in " + parts);
        }
        int n = slices.size();
        long sliceOut = out / parts;
        Lora l = new Lora();
        l.parts = parts;
        l.slices = List.copyOf(slices);
        l.r = c.r;
        l.scaling = c.scaling();
        l.positions = positions;
        l.mask = mask;
        DataType f = DataType.FLOAT32;
        Shape aShape = new Shape((long) n * c.r, in);
        Shape bShape = new Shape(n * sliceOut, c.r);
        if ("bert".equals(c.initWeights)) {
            l.a = register("loras." + name + ".lora_A", new Param(m.randomNormal(0f, 0.02f, aShape, f)));
            l.b = register("loras." + name + ".lora_B", new Param(m.randomNormal(0f, 0.02f, bShape, f)));
        } else { // "lora": A kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B zeros
            float bound = (float) (1 / Math.sqrt(in));
            l.a = register("loras." + name + ".lora_A", new Param(m.randomUniform(-bound, bound, aShape, f)));
            l.b = register("loras." + name + ".lora_B", new Param(m.zeros(bShape, f)));
        }
        if (c.useGating) { // weight N(0, 0.02); the bias keeps nn.Linear's default U(-1/sqrt(in), 1/sqrt(in))
            float bound = (float) (1 / Math.sqrt(in));
            l.gateW = register("loras." + name + ".gate.weight", new Param(m.randomNormal(0f, 0.02f, new Shape(n, in), f)));
            l.gateB = register("loras." + name + ".gate.bias", new Param(m.randomUniform(-bound, bound, new Shape(n), f)));
        }
        l.dropout = add("loras_dropout." + name, new Dropout((float) c.dropout));
        adapters.put(name, l);
    }

    @Override
    public NDArray forward(NDArray input) {
        Projection base = (Projection) baseModule();
        NDArray x = base.sharedInput(input);
        NDArray y = base.forward(x);
        if (rowGroups(x) != null) {
            throw new PeftException("AdapterHub LoRA (a union adapter) does not run per row in a mixed-adapter batch");
        }
        for (Map.Entry<String, Lora> e : adapters.entrySet()) {
            if (state.isActive(e.getKey())) {
                y = y.add(delta(e.getValue(), x));
            }
        }
        return y;
    }

    private static NDArray delta(Lora l, NDArray x) {
        DataType dt = x.getDataType();
        NDArray a = Ops.cast(l.a.array(), dt);
        NDArray b = Ops.cast(l.b.array(), dt);
        NDArray afterA = Ops.linear(l.dropout.forward(x), a, null); // [B, S, n r]
        NDArray gate = l.gateW == null ? null
                : Gate.mean(x, Ops.cast(l.gateW.array(), dt), Ops.cast(l.gateB.array(), dt), l.positions, l.mask.get()); // [B, n]
        int n = l.slices.size();
        long sliceOut = b.getShape().get(0) / n;
        List<NDArray> outs = new ArrayList<>();
        for (int part = 0; part < l.parts; part++) {
            int at = l.slices.indexOf(part);
            if (at < 0) {
                Shape s = afterA.getShape();
                outs.add(x.getManager().zeros(new Shape(s.get(0), s.get(1), sliceOut), dt));
                continue;
            }
            NDArray ag = n == 1 ? afterA : afterA.get("..., " + (at * l.r) + ":" + ((at + 1) * l.r));
            NDArray bg = n == 1 ? b : b.get((at * sliceOut) + ":" + ((at + 1) * sliceOut));
            NDArray d = Ops.linear(ag, bg, null);
            d = gate == null ? d.mul(Ops.scalar(d, l.scaling)) : d.mul(gate.get(":, " + at + ":" + (at + 1)).expandDims(1));
            outs.add(d);
        }
        return outs.size() == 1 ? outs.get(0) : ai.djl.ndarray.NDArrays.concat(new ai.djl.ndarray.NDList(outs), -1);
    }

    @Override
    public Set<String> adapterNames() {
        return adapters.keySet();
    }

    @Override
    public void removeAdapter(String name) {
        Lora l = adapters.remove(name);
        if (l == null) {
            return;
        }
        for (String k : List.of("lora_A", "lora_B", "gate.weight", "gate.bias")) {
            if (parameters().containsKey("loras." + name + "." + k)) {
                unregister("loras." + name + "." + k);
            }
        }
        removeChild("loras_dropout." + name);
        for (Param p : new Param[] {l.a, l.b, l.gateW, l.gateB}) {
            if (p != null) {
                p.array().close();
            }
        }
    }
}
