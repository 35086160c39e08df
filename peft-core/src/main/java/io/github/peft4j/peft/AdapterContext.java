package io.github.peft4j.peft;

import io.github.peft4j.model.TransformerModel;

/**
 * What a method sees when it attaches an adapter.
 *
 * @param model the base model (possibly already wrapped by other adapters)
 * @param state which adapters are active
 * @param source where the config came from (an adapter_config.json path, or a description), for messages
 */
public record AdapterContext(TransformerModel model, AdapterState state, String source) {}
