package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import java.util.Map;

/**
 * A capability of an {@link Adapter} that takes part in training beyond its parameters. The trainer calls it for
 * every active, trainable adapter (and only those) in Hugging Face PEFT's documented order for AdaLoRA:
 * forward → task loss + {@link #extraLoss} of every adapter → backward → {@link #afterBackward} → gradient clipping
 * → optimizer step → {@link #afterStep} → zero gradients. With gradient accumulation, {@link #extraLoss} is called
 * for every micro-batch (its term is scaled like the task loss) and the other two once per optimizer step.
 * Every method has a default that does nothing.
 */
public interface TrainingHooks {
    /**
     * A term added to the task loss of this micro-batch (AdaLoRA's orthogonal regularisation, a mixture's balance
     * loss, an L0 penalty). It must be built from the adapter's parameters inside the current step so that its
     * gradient flows; a 0-d array in the parameters' dtype.
     *
     * @param step the step being computed
     * @return the term, or null for none
     */
    default NDArray extraLoss(TrainingStep step) {
        return null;
    }

    /**
     * Called after backward and before gradient clipping: the gradients of this adapter's parameters are final
     * for this step and may be read or changed in place (gradient masks).
     *
     * @param step the step being computed
     */
    default void afterBackward(TrainingStep step) {}

    /**
     * Called after the optimizer updated the parameters and before gradients are zeroed (AdaLoRA's rank
     * allocator reads the gradients here). Also called on an fp16 step skipped for an overflow (as HF's loop calls
     * AdaLoRA's {@code update_and_allocate} after every {@code optimizer.step()}), with the same step number and
     * zeroed gradients.
     *
     * @param step the step that was just taken
     */
    default void afterStep(TrainingStep step) {}

    /**
     * A term added to the evaluation loss, computed without gradients (HF PEFT adds AdaLoRA's orthogonal regulariser
     * to {@code outputs.loss} whenever labels are given, so its evaluation loss includes it). Default: none (a
     * training-only regulariser such as a mixture's balance loss).
     *
     * @return the 0-d term, or null
     */
    default NDArray evaluationLoss() {
        return null;
    }

    /**
     * State beyond the parameters and the optimizer that a resumed run needs to continue exactly (AdaLoRA's
     * importance averages and mask), saved in every trainer checkpoint. Default: none.
     *
     * @return name to array (the arrays are read at once; they may be the hook's own)
     */
    default Map<String, NDArray> trainingState() {
        return Map.of();
    }

    /**
     * Restores what {@link #trainingState} saved (called when a run resumes from a checkpoint).
     *
     * @param state name to array, as saved (empty for a checkpoint written without this state)
     * @param source the checkpoint file, for messages
     */
    default void loadTrainingState(Map<String, NDArray> state, String source) {}

    /**
     * Where training stands.
     *
     * @param step the optimizer step, 1-based: the first update is step 1
     * @param totalSteps the planned number of optimizer steps
     */
    record TrainingStep(long step, long totalSteps) {}
}
