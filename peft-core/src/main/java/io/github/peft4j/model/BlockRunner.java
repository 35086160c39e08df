package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import java.util.function.UnaryOperator;

/**
 * How a {@link TransformerModel} runs its transformer blocks: the model's forward pass hands each block to the runner
 * as a function of the block's input alone ({@code [B, S, hidden]} to {@code [B, S, hidden]}; the masks, positions,
 * the layer's past keys and values and its {@link HookSite}s are bound in it, and it has no other output), and the
 * runner calls it once or more. Without a runner a block is called once, directly. A runner is installed per thread
 * with {@link TransformerModel#useBlockRunner} and only acts on calls that ask for no cache
 * ({@link ModelInput#useCache()} false): training steps. The trainer's runners run each block in its own
 * {@link ai.djl.ndarray.NDScope} (the block's intermediates are freed when it returns; autograd keeps what backward
 * needs) and, with gradient checkpointing, run it without gradient recording and again in backward.
 *
 * <p>So a block may be run several times per step and its intermediates are closed when it returns: a layer that keeps
 * an array from its forward call for later (a statistic for an extra loss term) must take it out of the current scope
 * ({@link ai.djl.ndarray.NDScope#unregister}) and close it itself.
 */
@FunctionalInterface
public interface BlockRunner {
    /**
     * Runs one block.
     *
     * @param layer the block's layer index (0-based)
     * @param input the block's input
     * @param block the block as a function of its input (may be called more than once, with the same result for the
     *     same input and random state)
     * @return the block's output
     */
    NDArray run(int layer, NDArray input, UnaryOperator<NDArray> block);
}
