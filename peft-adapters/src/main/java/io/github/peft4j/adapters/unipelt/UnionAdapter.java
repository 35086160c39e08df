package io.github.peft4j.adapters.unipelt;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.adapters.bottleneck.AdapterHubAdapter;
import io.github.peft4j.adapters.bottleneck.AdapterHubFormat;
import io.github.peft4j.adapters.bottleneck.AdapterHubLayout;
import io.github.peft4j.adapters.bottleneck.BottleneckAdapter;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A union adapter (UniPELT, MAM): its bottleneck parts, its prefix and its LoRA wrappers under one name, active
 * together. Parameters carry AdapterHub's in-memory names (the prefix pool
 * {@code bert.prefix_tuning.prefix_tunings.NAME.self_prefix.wte.weight}, the gates
 * {@code bert.encoder.layer.0.attention.self.prefix_tuning.prefix_gates.NAME.weight},
 * {@code ...query.loras.NAME.lora_A}, {@code ...output.adapters.NAME.adapter_up.weight}); saved keys drop the name.
 * It neither merges (AdapterHub cannot merge gated LoRA or prefixes either) nor runs per row in a mixed batch.
 */
public final class UnionAdapter implements AdapterHubAdapter {
    private final String name;
    private final UnionConfig config;
    private final List<BottleneckAdapter> bottlenecks;
    private final HubPrefix prefix;
    private final LayerAdapter lora;

    UnionAdapter(String name, UnionConfig config, List<BottleneckAdapter> bottlenecks, HubPrefix prefix, LayerAdapter lora) {
        this.name = name;
        this.config = config;
        this.bottlenecks = List.copyOf(bottlenecks);
        this.prefix = prefix;
        this.lora = lora;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PeftConfig config() {
        return config;
    }

    @Override
    public Map<String, Param> parameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        if (prefix != null) {
            out.putAll(prefix.params);
        }
        bottlenecks.forEach(b -> out.putAll(b.parameters()));
        if (lora != null) {
            out.putAll(lora.parameters());
        }
        return Collections.unmodifiableMap(out);
    }

    private Map<String, Param> byKey() {
        Map<String, Param> out = new LinkedHashMap<>();
        parameters().forEach((k, p) -> out.put(AdapterHubFormat.withoutName(k, name), p));
        return out;
    }

    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        byKey().forEach((k, p) -> out.put(k, p.array()));
        return out;
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        LayerAdapter.copyInto(byKey(), tensors, source);
    }

    @Override
    public ObjectNode adapterHubConfig() {
        return config.adapterHubConfig();
    }

    @Override
    public Map<String, NDArray> adapterHubTensors() {
        Map<String, NDArray> out = new LinkedHashMap<>();
        if (prefix != null) {
            prefix.params.forEach((k, p) -> out.put(k, p.array()));
            // AdapterHub's state dict also holds the pool under every layer's prefix_tuning module
            AdapterHubLayout layout = AdapterHubLayout.of(prefix.model());
            String pool = prefix.poolPath();
            String local = pool.substring(layout.root().length()); // prefix_tuning.prefix_tunings.NAME.self_prefix.
            for (int i = 0; i < prefix.model().numLayers(); i++) {
                String copy = layout.attention(i) + ".prefix_tuning.pool." + local.substring("prefix_tuning.".length());
                prefix.params.forEach((k, p) -> {
                    if (k.startsWith(pool)) {
                        out.put(copy + k.substring(pool.length()), p.array());
                    }
                });
            }
        }
        bottlenecks.forEach(b -> out.putAll(b.adapterHubTensors()));
        if (lora != null) {
            lora.parameters().forEach((k, p) -> out.put(k, p.array()));
        }
        return out;
    }

    @Override
    public void remove() {
        bottlenecks.forEach(BottleneckAdapter::remove);
        if (prefix != null) {
            prefix.remove();
        }
        if (lora != null) {
            lora.remove();
        }
    }
}
