package io.github.peft4j.adapters.unipelt;

import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.bottleneck.AdapterHubLayout;
import io.github.peft4j.adapters.bottleneck.BottleneckAdapter;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.adapters.bottleneck.BottleneckMethod;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Union adapters ({@code UNION}: UniPELT, MAM, any AdapterHub {@code ConfigUnion}): each part attaches through its
 * own machinery under the one adapter name — bottleneck parts through {@link BottleneckMethod#build}, the prefix at
 * the {@code KV_PREFIX} sites ({@link HubPrefix}), LoRA as {@link HubLoraLayer} wrappers — and they act together
 * whenever the adapter is active.
 */
public final class UnionMethod implements PeftMethod {
    /** For {@link java.util.ServiceLoader}. */
    public UnionMethod() {}

    @Override
    public String peftType() {
        return UnionConfig.TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return UnionConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        UnionConfig c = (UnionConfig) config;
        UnionConfig.Parts parts = c.parts(context.source());
        Gate.Positions positions = c.gatePositions();
        List<BottleneckAdapter> bottlenecks = new ArrayList<>();
        HubPrefix prefix = null;
        LayerAdapter lora = null;
        try {
            for (BottleneckConfig b : parts.bottlenecks()) {
                bottlenecks.add(BottleneckMethod.build(context, name, b.gatePositions(positions)));
            }
            if (parts.prefix() != null) {
                prefix = new HubPrefix(name, parts.prefix(), context.model(), context.state(), positions, context.source());
            }
            if (parts.lora() != null) {
                lora = lora(context, name, c, parts.lora(), positions);
            }
        } catch (RuntimeException e) { // a refused part leaves nothing of the union behind
            bottlenecks.forEach(BottleneckAdapter::remove);
            if (prefix != null) {
                prefix.remove();
            }
            throw e;
        }
        return new UnionAdapter(name, c, bottlenecks, prefix, lora);
    }

    /** AdapterHub's LoRA placement: selfattn (q/k/v, GPT-2's fused c_attn), intermediate, output, minus leave_out. */
    private static LayerAdapter lora(AdapterContext context, String name, UnionConfig union, HubLoraConfig c,
            Gate.Positions positions) {
        TransformerModel model = context.model();
        AdapterHubLayout layout = AdapterHubLayout.of(model);
        int layers = model.numLayers();
        for (int l : c.leaveOut) {
            if (l < 0 || l >= layers) {
                throw new PeftException(context.source() + ": lora leave_out has layer " + l + ", the model has layers 0.."
                        + (layers - 1));
            }
        }
        boolean fused = "gpt2".equals(layout.family());
        Map<String, List<Integer>> slices = new LinkedHashMap<>(); // path -> enabled thirds (fused) or [0]
        Map<String, Integer> partsOf = new LinkedHashMap<>();
        List<String> qkv = List.of("q", "k", "v");
        for (int i = 0; i < layers; i++) {
            if (c.leaveOut.contains(i)) {
                continue;
            }
            if (c.selfattnLora) {
                for (String m : qkv) { // AdapterHub's enable_lora order is q, k, v whatever attn_matrices' order
                    if (!c.attnMatrices.contains(m)) {
                        continue;
                    }
                    String path = layout.loraTarget(i, "selfattn", m);
                    slices.computeIfAbsent(path, k -> new ArrayList<>()).add(fused ? qkv.indexOf(m) : 0);
                    partsOf.put(path, fused ? 3 : 1);
                }
            }
            if (c.intermediateLora) {
                String path = layout.loraTarget(i, "intermediate", null);
                slices.put(path, List.of(0));
                partsOf.put(path, 1);
            }
            if (c.outputLora) {
                String path = layout.loraTarget(i, "output", null);
                slices.put(path, List.of(0));
                partsOf.put(path, 1);
            }
        }
        if (slices.isEmpty()) {
            throw new PeftException(context.source() + ": the lora part targets no module (leave_out " + c.leaveOut
                    + ", attn_matrices " + c.attnMatrices + ")");
        }
        for (String path : slices.keySet()) {
            Module m = model.resolve(path);
            if (!(io.github.peft4j.peft.Targets.innermost(m) instanceof Projection)) {
                throw new PeftException(context.source() + ": lora target '" + path + "' is not a linear layer");
            }
        }
        AdapterState state = context.state();
        Map<String, AdapterLayer> installed = LayerAdapter.install(context, new ArrayList<>(slices.keySet()), HubLoraLayer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public HubLoraLayer wrap(String path, Module base, AdapterState s) {
                        return new HubLoraLayer((Projection) base, s);
                    }

                    @Override
                    public void add(HubLoraLayer layer, String path) {
                        layer.addAdapter(name, c, partsOf.get(path), slices.get(path), positions, state::attentionMask);
                    }
                });
        return new LayerAdapter(name, union, model, installed, "");
    }
}
