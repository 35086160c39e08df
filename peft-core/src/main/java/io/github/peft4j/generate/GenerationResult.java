package io.github.peft4j.generate;

import java.util.Arrays;

/**
 * The new tokens of every row, as transformers returns them after the prompt: a rectangle whose width is the
 * number of steps run, rows that finished early filled with the pad id.
 *
 * @param tokens {@code [B][steps]} new token ids (the stop token included, then padding)
 * @param lengths per row, the number of real new tokens (up to and including its stop token)
 * @param stopped per row, whether it ended at a stop/EOS token (false: it ran out of {@code maxNewTokens})
 */
public record GenerationResult(int[][] tokens, int[] lengths, boolean[] stopped) {

    /**
     * @param row a row
     * @return that row's new tokens without the padding after its stop token
     */
    public int[] tokens(int row) {
        return Arrays.copyOf(tokens[row], lengths[row]);
    }

    /** @return the number of rows */
    public int size() {
        return tokens.length;
    }
}
