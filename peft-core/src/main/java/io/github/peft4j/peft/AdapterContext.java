package io.github.peft4j.peft;

import io.github.peft4j.model.TransformerModel;
import java.util.Map;

/**
 * What a method sees when it attaches an adapter.
 *
 * @param model the base model (possibly already wrapped by other adapters)
 * @param state which adapters are active
 * @param source where the config came from (an adapter_config.json path, or a description), for messages
 * @param adapters the adapters already attached to the model, by name (read-only): a method that can exist only
 *     once per model (BitFit trains biases in place) or that builds on others (combinations) looks here
 */
public record AdapterContext(TransformerModel model, AdapterState state, String source, Map<String, Adapter> adapters) {
    /** Copies the map. */
    public AdapterContext {
        adapters = adapters == null ? Map.of() : Map.copyOf(adapters);
    }
}
