package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.peft.Adapter;
import java.util.Map;

/**
 * An adapter that has an AdapterHub {@code save_adapter} layout: its {@link #parameters()} are named as AdapterHub
 * names them in memory (the adapter name inside, e.g. {@code bert.encoder.layer.0.output.adapters.NAME.adapter_up.weight}),
 * its {@link #stateDict()} keys are those names without the adapter name ({@link AdapterHubFormat#withoutName}).
 * Bottleneck adapters and union adapters (UniPELT, MAM) are.
 */
public interface AdapterHubAdapter extends Adapter {
    /**
     * @return the {@code "config"} object of AdapterHub's {@code adapter_config.json} (a BnConfig, or
     *     {@code {"architecture": "union", "configs": [...]}})
     */
    ObjectNode adapterHubConfig();

    /**
     * @return the tensors of AdapterHub's state dict of this adapter, with the adapter name in the keys, including the
     *     keys AdapterHub holds twice (the {@code ln_before} LayerNorm as {@code adapter_down.0}, the prefix pool under
     *     every layer)
     */
    Map<String, NDArray> adapterHubTensors();
}
