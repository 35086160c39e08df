package io.github.peft4j.adapters.unipelt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.bottleneck.AdapterHubLayout;
import io.github.peft4j.model.KvPrefixHook;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.AdapterState;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdapterHub's prefix tuning ({@code methods/prefix_tuning.py} {@code PrefixTuning}, {@code FlatPrefixTuning},
 * {@code PrefixTuningLayer}) at the model's {@link SiteRole#KV_PREFIX} sites: the keys and values are prepended after
 * the rotary embedding, visible to every query, and the real tokens keep positions 0.. (AdapterHub does not shift them,
 * unlike HF PEFT's prefix tuning, which feeds the prefix as past keys and values). The prefix is
 * {@code control_trans(wte)} reshaped {@code (n, 2 L', kv_heads, head_dim)} (L' = layers not left out; layer slot j takes
 * rows 2j as keys and 2j + 1 as values), dropout in training, then, with a gate, keys times {@code g[:, 0]} and values
 * times {@code g[:, -1]}, {@code g = mean_positions(sigmoid(gate(attention input)))}.
 *
 * <p>This is not peft-prompt's {@code PrefixTuningAdapter} (HF PEFT's): AdapterHub's embedding is {@code hidden} wide
 * even with grouped-query attention, its activation and dropout are configurable, its positions start at 0 and it has
 * gates; only the reshape is shared in idea.
 */
final class HubPrefix {
    /** AdapterHub's location key of self-attention prefixes. */
    static final String LOCATION = "self_prefix";

    private final String name;
    private final HubPrefixConfig c;
    private final AdapterState state;
    private final TransformerModel model;
    private final String pool;
    private final int n;
    private final int slots;
    private final int kvHeads;
    private final int headDim;
    private final Gate.Positions positions;
    /** the layers with a prefix, in order (slot j = index in this list) */
    final List<Integer> layers = new ArrayList<>();
    /** in-memory (AdapterHub) name to parameter: the pool's, then each layer's gate */
    final Map<String, Param> params = new LinkedHashMap<>();
    private final Map<Integer, Param[]> gates = new LinkedHashMap<>();

    HubPrefix(String name, HubPrefixConfig c, TransformerModel model, AdapterState state, Gate.Positions positions,
            String where) {
        this.name = name;
        this.c = c;
        this.state = state;
        this.model = model;
        this.positions = positions;
        AdapterHubLayout layout = AdapterHubLayout.of(model);
        int total = model.numLayers();
        for (int l : c.leaveOut) {
            if (l < 0 || l >= total) {
                throw new PeftException(where + ": prefix_tuning leave_out has layer " + l + ", the model has layers 0.."
                        + (total - 1));
            }
        }
        for (int i = 0; i < total; i++) {
            if (!c.leaveOut.contains(i)) {
                layers.add(i);
            }
        }
        if (layers.isEmpty()) {
            throw new PeftException(where + ": prefix_tuning leave_out " + c.leaveOut + " leaves no layer for a prefix");
        }
        this.n = c.prefixLength;
        this.slots = layers.size();
        this.kvHeads = model.numKeyValueHeads();
        this.headDim = model.headDim();
        int hidden = model.hiddenSize();
        long width = 2L * slots * kvHeads * headDim;
        NDManager m = model.manager();
        DataType f = DataType.FLOAT32;
        this.pool = layout.root() + "prefix_tuning.prefix_tunings." + name + "." + LOCATION + ".";
        if (c.flat) { // torch.randn(prefix_length * n_layers * 2 * n_heads * n_embd_per_head)
            params.put(pool + "control_trans", new Param(m.randomNormal(0f, 1f, new Shape(n * width), f)));
        } else { // nn.Embedding N(0, 1); nn.Linear's default U(-1/sqrt(in), 1/sqrt(in)) for weights and biases
            params.put(pool + "wte.weight", new Param(m.randomNormal(0f, 1f, new Shape(n, hidden), f)));
            float b0 = (float) (1 / Math.sqrt(hidden));
            float b2 = (float) (1 / Math.sqrt(c.bottleneckSize));
            params.put(pool + "control_trans.0.weight", new Param(m.randomUniform(-b0, b0, new Shape(c.bottleneckSize, hidden), f)));
            params.put(pool + "control_trans.0.bias", new Param(m.randomUniform(-b0, b0, new Shape(c.bottleneckSize), f)));
            params.put(pool + "control_trans.2.weight", new Param(m.randomUniform(-b2, b2, new Shape(width, c.bottleneckSize), f)));
            params.put(pool + "control_trans.2.bias", new Param(m.randomUniform(-b2, b2, new Shape(width), f)));
        }
        if (c.useGating) { // nn.Linear(hidden, 1 or 2), weight N(0, 0.02), bias as nn.Linear
            int outputs = c.sharedGating ? 1 : 2;
            float bound = (float) (1 / Math.sqrt(hidden));
            for (int i : layers) {
                String g = layout.attention(i) + ".prefix_tuning.prefix_gates." + name + ".";
                Param w = new Param(m.randomNormal(0f, 0.02f, new Shape(outputs, hidden), f));
                Param b = new Param(m.randomUniform(-bound, bound, new Shape(outputs), f));
                params.put(g + "weight", w);
                params.put(g + "bias", b);
                gates.put(i, new Param[] {w, b});
            }
        }
        for (int j = 0; j < slots; j++) {
            int layer = layers.get(j);
            int slot = j;
            model.site(SiteRole.KV_PREFIX, layer).installPrefix(name, hidden2 -> prefix(layer, slot, hidden2));
        }
    }

    /** @return the model */
    TransformerModel model() {
        return model;
    }

    /** @return the pool's module path with a trailing dot ({@code bert.prefix_tuning.prefix_tunings.NAME.self_prefix.}) */
    String poolPath() {
        return pool;
    }

    /** {@code (n, 2 L', kv_heads, head_dim)} in the compute dtype, on the gradient path. */
    private NDArray keyValues(DataType dt) {
        NDArray kv;
        if (c.flat) {
            kv = Ops.cast(params.get(pool + "control_trans").array(), dt);
        } else {
            NDArray e = Ops.cast(params.get(pool + "wte.weight").array(), dt);
            NDArray h = Ops.linear(e, Ops.cast(params.get(pool + "control_trans.0.weight").array(), dt),
                    Ops.cast(params.get(pool + "control_trans.0.bias").array(), dt));
            h = "tanh".equals(act()) ? h.tanh() : Ops.activation(act(), h);
            kv = Ops.linear(h, Ops.cast(params.get(pool + "control_trans.2.weight").array(), dt),
                    Ops.cast(params.get(pool + "control_trans.2.bias").array(), dt));
        }
        return kv.reshape(n, 2L * slots, kvHeads, headDim);
    }

    private String act() {
        return c.nonLinearity.toLowerCase(java.util.Locale.ROOT);
    }

    private KvPrefixHook.Prefix prefix(int layer, int slot, NDArray hidden) {
        if (!state.isActive(name)) {
            return null;
        }
        if (state.context().rowAdapters() != null) {
            throw new PeftException("AdapterHub prefix tuning (union adapter '" + name
                    + "') does not run per row in a mixed-adapter batch");
        }
        DataType dt = hidden.getDataType();
        long batch = hidden.getShape().get(0);
        NDArray kv = keyValues(dt);
        if (c.dropout > 0 && model.isTraining()) {
            kv = ai.djl.nn.norm.Dropout.dropout(kv, (float) c.dropout, true).head();
        }
        Shape out = new Shape(batch, kvHeads, n, headDim);
        NDArray keys = kv.get(":, " + (2 * slot)).transpose(1, 0, 2).expandDims(0).broadcast(out);
        NDArray values = kv.get(":, " + (2 * slot + 1)).transpose(1, 0, 2).expandDims(0).broadcast(out);
        Param[] g = gates.get(layer);
        if (g != null) {
            NDArray gate = Gate.mean(hidden, Ops.cast(g[0].array(), dt), Ops.cast(g[1].array(), dt), positions,
                    state.attentionMask()); // [B, 1 or 2]
            long last = gate.getShape().get(1) - 1;
            keys = keys.mul(gate.get(":, 0:1").reshape(batch, 1, 1, 1));
            values = values.mul(gate.get(":, " + last + ":" + (last + 1)).reshape(batch, 1, 1, 1));
        }
        return new KvPrefixHook.Prefix(keys, values);
    }

    void remove() {
        for (int layer : layers) {
            model.site(SiteRole.KV_PREFIX, layer).uninstall(name);
        }
        params.values().forEach(p -> p.array().close());
    }
}
