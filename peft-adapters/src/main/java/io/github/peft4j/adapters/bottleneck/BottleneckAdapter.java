package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.RowGroups;
import io.github.peft4j.peft.RowRouted;
import io.github.peft4j.nn.Param;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BinaryOperator;

/**
 * A bottleneck adapter installed at hook sites. Parameters are named as AdapterHub names them in memory
 * ({@code bert.encoder.layer.0.output.adapters.NAME.adapter_down.0.weight}); {@link #stateDict} keys drop the adapter
 * name ({@code ...output.adapters.adapter_down.0.weight}), as HF PEFT's files do, so a file loads under any name.
 * Each hook returns the sub-block output unchanged while its adapter is inactive or disabled; in a mixed-adapter
 * batch it acts on its own rows only ({@link RowRouted}).
 */
public final class BottleneckAdapter implements AdapterHubAdapter, RowRouted {
    /** Where AdapterHub keeps the adapter segment in its keys. */
    static final String ADAPTERS = ".adapters.";

    /** A block and the AdapterHub module path that holds it. */
    record Placed(String holder, BottleneckBlock block) {}

    private final String name;
    private final BottleneckConfig config;
    private final AdapterState state;
    private final List<Placed> placed;
    /** The NICE invertible adapter on the embedding output, or null. */
    private final NiceBlock inv;
    /** Its AdapterHub module path ({@code bert.invertible_adapters}). */
    private final String invHolder;

    BottleneckAdapter(String name, BottleneckConfig config, AdapterState state, List<Placed> placed, NiceBlock inv,
            String invHolder) {
        this.name = name;
        this.config = config;
        this.state = state;
        this.placed = List.copyOf(placed);
        this.inv = inv;
        this.invHolder = invHolder;
        for (Placed p : this.placed) {
            BottleneckBlock b = p.block();
            b.site().install(name, (input, output, residual) -> hook(b::apply, output, residual));
            b.finishSite().installFinisher(name, (output, residual, standard, previous) ->
                    finish(b, output, residual, standard, previous));
        }
        if (inv != null) { // AdapterHub applies only the first active adapter's invertible adapter
            inv.site().install(name, (input, output, residual) -> firstActive() ? hook((h, x) -> inv.apply(h), output, output)
                    : output);
        }
    }

    private boolean firstActive() {
        return state.context().rowAdapters() != null || state.active().stream().filter(state::isActive).findFirst()
                .map(name::equals).orElse(false);
    }

    private NDArray hook(java.util.function.BinaryOperator<NDArray> b, NDArray h, NDArray x) {
        RowGroups groups = state.rowGroups(h.getManager());
        if (groups == null) {
            return state.isActive(name) ? b.apply(h, x) : h;
        }
        long hidden = h.getShape().get(2);
        NDArray delta = groups.map(h.concat(x, -1), (rowName, rows) -> {
            if (!state.appliesTo(name, rowName)) {
                return null;
            }
            NDArray hr = rows.get("..., :" + hidden);
            return b.apply(hr, rows.get("..., " + hidden + ":")).sub(hr);
        });
        return delta == null ? h : h.add(delta);
    }

    /** The block's end of its sub-block where this adapter acts (all rows, or its own rows of a mixed batch). */
    private NDArray finish(BottleneckBlock b, NDArray output, NDArray residual, BinaryOperator<NDArray> standard,
            BinaryOperator<NDArray> previous) {
        RowGroups groups = state.rowGroups(output.getManager());
        if (groups == null) {
            return state.isActive(name) ? b.finish(output, residual, standard) : previous.apply(output, residual);
        }
        List<String> rows = groups.rows();
        long[] mine = rows.stream().mapToLong(row -> state.appliesTo(name, row) ? 1 : 0).toArray();
        long count = java.util.Arrays.stream(mine).sum();
        if (count == 0) {
            return previous.apply(output, residual);
        }
        NDArray own = b.finish(output, residual, standard);
        if (count == rows.size()) {
            return own;
        }
        NDArray pick = io.github.peft4j.nn.Ops.owned(output.getManager(), mine, new Shape(mine.length, 1, 1)).gt(0)
                .broadcast(own.getShape());
        return NDArrays.where(pick, own, previous.apply(output, residual));
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PeftConfig config() {
        return config;
    }

    /** @return the config, typed */
    public BottleneckConfig bottleneckConfig() {
        return config;
    }

    @Override
    public Map<String, Param> parameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        for (Placed p : placed) {
            p.block().params.forEach((k, v) -> out.put(p.holder() + ADAPTERS + name + "." + k, v));
        }
        if (inv != null) {
            inv.params.forEach((k, v) -> out.put(invHolder + "." + name + "." + k, v));
        }
        return Collections.unmodifiableMap(out);
    }

    @Override
    public com.fasterxml.jackson.databind.node.ObjectNode adapterHubConfig() {
        return AdapterHubFormat.hubDict(config);
    }

    @Override
    public Map<String, NDArray> adapterHubTensors() {
        Map<String, NDArray> tensors = new LinkedHashMap<>();
        keyed(name).forEach((k, p) -> {
            tensors.put(k, p.array());
            String norm = ".adapter_norm_before.";
            if (k.contains(norm)) { // AdapterHub's state dict has the ln_before LayerNorm under both names
                tensors.put(k.replace(norm, ".adapter_down.0."), p.array());
            }
        });
        return tensors;
    }

    /**
     * @param adapterName the name to put in the keys, or null for none (peft4j's files)
     * @return key to parameter
     */
    Map<String, Param> keyed(String adapterName) {
        Map<String, Param> out = new LinkedHashMap<>();
        String seg = adapterName == null ? "" : adapterName + ".";
        for (Placed p : placed) {
            p.block().params.forEach((k, v) -> out.put(p.holder() + ADAPTERS + seg + k, v));
        }
        if (inv != null) {
            inv.params.forEach((k, v) -> out.put(invHolder + "." + seg + k, v));
        }
        return out;
    }

    /** @return whether the blocks have AdapterHub's tied {@code adapter_down.0} = {@code adapter_norm_before} keys */
    boolean lnBefore() {
        return config.lnBeforeOn();
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        keyed(null).forEach((k, p) -> out.put(k, p.array()));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        LayerAdapter.copyInto(keyed(null), tensors, source);
    }

    @Override
    public void remove() {
        for (Placed p : placed) {
            p.block().site().uninstall(name);
            p.block().finishSite().uninstall(name);
            p.block().params.values().forEach(v -> v.array().close());
        }
        if (inv != null) {
            inv.site().uninstall(name);
            inv.params.values().forEach(v -> v.array().close());
        }
    }
}
