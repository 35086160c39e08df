package io.github.peft4j.data;

import java.util.Arrays;

/** Cutting a tokenized text to a maximum length while keeping the tokenizer's special tokens at both ends. */
final class Truncation {
    private Truncation() {}

    /**
     * Encodes a text with special tokens, cut to at most {@code maxLength} tokens: content tokens are dropped
     * from the end, the post-processor's leading and trailing special tokens ({@code [CLS]}, {@code [SEP]},
     * {@code <s>}) stay.
     *
     * @param maxLength the limit, or 0 for none
     * @param report counts a truncation
     */
    static int[] encode(Tokenizer tokenizer, String text, int maxLength, ReadReport report) {
        int[] full = tokenizer.encode(text, true);
        if (maxLength <= 0 || full.length <= maxLength) {
            return full;
        }
        report.truncatedOne();
        int[] plain = tokenizer.encode(text, false);
        int extra = full.length - plain.length;
        for (int p = 0; p <= extra && extra < maxLength; p++) {
            int s = extra - p;
            if (Arrays.equals(full, p, p + plain.length, plain, 0, plain.length)) {
                int[] out = new int[maxLength];
                System.arraycopy(full, 0, out, 0, p);
                System.arraycopy(plain, 0, out, p, maxLength - p - s);
                System.arraycopy(full, full.length - s, out, maxLength - s, s);
                return out;
            }
        }
        return Arrays.copyOf(full, maxLength);
    }
}
