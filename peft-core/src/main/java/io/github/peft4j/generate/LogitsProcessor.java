package io.github.peft4j.generate;

import ai.djl.ndarray.NDArray;

/**
 * Rewrites next-token scores at each decoding step: penalties, warpers, or another model's opinion (proxy-tuning
 * plugs in here). Processors run in a chain; each gets the previous one's output. Implementations must not modify
 * their inputs and must return an array that lives in the current step (a new array, or {@code scores} itself).
 */
@FunctionalInterface
public interface LogitsProcessor {
    /**
     * @param inputIds {@code [B, L]} int64, every token of each row so far (prompt, padding included, and generated)
     * @param scores {@code [B, V]} fp32 next-token scores
     * @return the new scores {@code [B, V]} fp32; {@code -Infinity} removes a token
     */
    NDArray process(NDArray inputIds, NDArray scores);
}
