package io.github.peft4j.data;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.model.ModelInput;

/**
 * A padded batch on the model's device, made by a {@link Collator}. Its arrays belong to the manager it was
 * collated into (normally the step's scope).
 *
 * @param inputIds {@code [B, T]} int64
 * @param attentionMask {@code [B, T]} int64, 1 for real tokens
 * @param labels {@code [B, T]} int64 per-token labels with {@link Example#IGNORE} at padding and unlearned
 *     positions, or {@code [B]} int64 class ids for sequence classification
 * @param size the number of examples B
 * @param tokens the number of real (unpadded) tokens
 * @param labelledTokens the number of per-token labels that are not {@link Example#IGNORE} (0 for sequence
 *     classification)
 */
public record Batch(NDArray inputIds, NDArray attentionMask, NDArray labels, int size, long tokens,
        long labelledTokens) {

    /** @return the model input of this batch */
    public ModelInput input() {
        return ModelInput.of(inputIds, attentionMask);
    }

    /** @return whether the labels are one class id per sequence */
    public boolean sequenceLabels() {
        return labels.getShape().dimension() == 1;
    }
}
