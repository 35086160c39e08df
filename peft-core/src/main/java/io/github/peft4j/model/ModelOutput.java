package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;

/**
 * The outputs of a forward pass.
 *
 * @param logits causal LM {@code [B, S, vocab]}, sequence classification {@code [B, labels]}, token
 *     classification {@code [B, S, labels]}; null for feature extraction
 * @param hiddenStates the last layer's hidden states {@code [B, S, hidden]} (after the final norm where the
 *     architecture has one)
 * @param cache keys and values including the new positions when requested, else null
 */
public record ModelOutput(NDArray logits, NDArray hiddenStates, KvCache cache) {}
