package io.github.peft4j.adapters.select;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import io.github.peft4j.peft.PeftMethods;

/**
 * Last-k-layers tuning ({@code peft_type: LAST_K}, see {@link LastKConfig}): {@code SELECTIVE} restricted to the last
 * {@code last_k} layers, trained in place as an {@link InPlaceAdapter}. The saved config carries the resolved
 * {@code last_k}.
 */
public final class LastKMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public LastKMethod() {}

    @Override
    public String peftType() {
        return LastKConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return LastKConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        LastKConfig c = (LastKConfig) config;
        c.lastK(c.resolvedK(context.model().numLayers()));
        // the selection is SELECTIVE's with layers_to_transform = the last k layers (the saved config keeps last_k)
        ObjectNode json = PeftMethods.mapper().valueToTree(c);
        json.put("peft_type", SelectiveConfig.PEFT_TYPE);
        json.remove("last_k");
        SelectiveConfig layers = (SelectiveConfig) PeftMethods.parse(json.toString(), "LAST_K selection");
        layers.layersToTransform(Selection.lastLayers(context.model(), c.lastK(), "LAST_K last_k"));
        return new InPlaceAdapter(context, name, c, SelectiveMethod.select(context.model(), layers), k -> k);
    }
}
