package io.github.peft4j.peft;

import io.github.peft4j.model.TransformerModel;

/**
 * What a method sees when it attaches an adapter: the model and the shared active-adapter state.
 *
 * @param model the base model (possibly already wrapped by other adapters)
 * @param state which adapters are active
 */
public record AdapterContext(TransformerModel model, AdapterState state) {}
