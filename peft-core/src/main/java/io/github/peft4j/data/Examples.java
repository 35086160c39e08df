package io.github.peft4j.data;

import java.util.AbstractList;
import java.util.List;
import java.util.RandomAccess;

/**
 * The examples a dataset reader produced (an unmodifiable list), with its {@link ReadReport} and, for
 * classification readers, the {@link LabelMap} used.
 */
public final class Examples extends AbstractList<Example> implements RandomAccess {
    private final List<Example> examples;
    private final ReadReport report;
    private final LabelMap labels;

    Examples(List<Example> examples, ReadReport report, LabelMap labels) {
        this.examples = List.copyOf(examples);
        this.report = report.finish(examples.size());
        this.labels = labels;
    }

    @Override
    public Example get(int index) {
        return examples.get(index);
    }

    @Override
    public int size() {
        return examples.size();
    }

    /** @return what the reader did: records read, skipped with reasons, truncated */
    public ReadReport report() {
        return report;
    }

    /** @return the label map of a classification or CoNLL read, or null for other readers */
    public LabelMap labelMap() {
        return labels;
    }

    /**
     * Token-length statistics of a list of examples.
     *
     * @param examples the examples
     * @return min, mean, max and total tokens (all 0 for an empty list)
     */
    public static LengthStats lengthStats(List<Example> examples) {
        int min = Integer.MAX_VALUE;
        int max = 0;
        long total = 0;
        for (Example e : examples) {
            min = Math.min(min, e.length());
            max = Math.max(max, e.length());
            total += e.length();
        }
        return examples.isEmpty() ? new LengthStats(0, 0, 0, 0)
                : new LengthStats(min, (double) total / examples.size(), max, total);
    }

    /**
     * Token lengths of a set of examples.
     *
     * @param min the shortest
     * @param mean the mean
     * @param max the longest
     * @param total the sum
     */
    public record LengthStats(int min, double mean, int max, long total) {
    }
}
