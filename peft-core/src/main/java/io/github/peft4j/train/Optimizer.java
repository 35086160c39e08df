package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.nn.Param;
import java.util.Map;

/**
 * Updates trainable parameters in place from their gradients. Updates run without gradient recording; {@link
 * #step} zeroes each gradient afterwards (DJL accumulates gradients across backward calls until they are zeroed),
 * {@link #update} leaves them for the caller.
 * Implementations keep per-parameter state keyed by the parameter name, so the same names must be passed on
 * every step (the map {@code PeftModel.trainableParameters()} returns).
 */
public interface Optimizer extends AutoCloseable {

    /**
     * One update of every parameter that has a gradient, then zeroes those gradients. Parameters without a
     * gradient (frozen, or not reached by backward yet) are skipped and keep their state.
     *
     * @param params the parameters by name
     * @param lr the learning rate of this step
     */
    default void step(Map<String, Param> params, double lr) {
        update(params, lr);
        Gradients.zero(params.values());
    }

    /**
     * One update of every parameter that has a gradient, leaving the gradients as they are (the trainer zeroes
     * them after its after-step hooks have read them). Parameters without a gradient are skipped.
     *
     * @param params the parameters by name
     * @param lr the learning rate of this step
     */
    void update(Map<String, Param> params, double lr);

    /**
     * The state for a checkpoint: per-parameter buffers keyed {@code <buffer>.<param name>} and {@code step}
     * (a 1-element INT64 array). Buffers are the live arrays (do not close or modify them; copy them before the
     * next step if they must be kept); the {@code step} array is new and belongs to the caller's scope.
     *
     * @return the state
     */
    Map<String, NDArray> state();

    /**
     * Replaces the state with a copy of one returned by {@link #state()} (e.g. read back from a checkpoint).
     *
     * @param state the state
     * @throws io.github.peft4j.PeftException if a key is unknown or {@code step} is missing
     */
    void loadState(Map<String, NDArray> state);

    /** @return the number of steps taken (restored by {@link #loadState}) */
    long steps();

    /** Frees the optimizer's state. */
    @Override
    void close();
}
