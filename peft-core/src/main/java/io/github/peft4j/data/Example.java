package io.github.peft4j.data;

import java.util.Arrays;

/**
 * One tokenized training or evaluation example, before padding.
 *
 * <ul>
 *   <li>causal LM: {@code labels} per token ({@link #IGNORE} where no loss is taken, e.g. the prompt), or null
 *       to learn every token;</li>
 *   <li>token classification: {@code labels} per token (class ids, {@link #IGNORE} for special and
 *       continuation sub-tokens);</li>
 *   <li>sequence classification: {@code labels} null and {@code label} the class id.</li>
 * </ul>
 *
 * @param inputIds token ids, length T &gt; 0
 * @param attentionMask 1 for real tokens, 0 for padding, length T; null means all ones
 * @param labels per-token labels of length T, or null
 * @param label the class id of the whole sequence, or -1 when the example has none
 */
public record Example(int[] inputIds, int[] attentionMask, int[] labels, int label) {
    /** The label value that takes no part in the loss (PyTorch's ignore_index). */
    public static final int IGNORE = -100;

    /** Checks the lengths. */
    public Example {
        if (inputIds == null || inputIds.length == 0) {
            throw new IllegalArgumentException("an example needs at least one token");
        }
        if (attentionMask != null && attentionMask.length != inputIds.length) {
            throw new IllegalArgumentException("attention_mask has " + attentionMask.length + " entries, input_ids "
                    + inputIds.length);
        }
        if (labels != null && labels.length != inputIds.length) {
            throw new IllegalArgumentException("labels has " + labels.length + " entries, input_ids " + inputIds.length);
        }
    }

    /**
     * A causal-LM example whose every token is learned.
     *
     * @param inputIds the tokens
     * @return the example
     */
    public static Example tokens(int... inputIds) {
        return new Example(inputIds, null, null, -1);
    }

    /**
     * A sequence-classification example.
     *
     * @param inputIds the tokens
     * @param label the class id
     * @return the example
     */
    public static Example classified(int[] inputIds, int label) {
        return new Example(inputIds, null, null, label);
    }

    /**
     * An example with per-token labels.
     *
     * @param inputIds the tokens
     * @param labels the labels, {@link #IGNORE} where no loss is taken
     * @return the example
     */
    public static Example labelled(int[] inputIds, int[] labels) {
        return new Example(inputIds, null, labels, -1);
    }

    /** @return the number of tokens */
    public int length() {
        return inputIds.length;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Example e && label == e.label && Arrays.equals(inputIds, e.inputIds)
                && Arrays.equals(attentionMask, e.attentionMask) && Arrays.equals(labels, e.labels);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * Arrays.hashCode(inputIds) + Arrays.hashCode(labels)) + label;
    }

    @Override
    public String toString() {
        return "Example[inputIds=" + Arrays.toString(inputIds) + ", attentionMask=" + Arrays.toString(attentionMask)
                + ", labels=" + Arrays.toString(labels) + ", label=" + label + "]";
    }
}
