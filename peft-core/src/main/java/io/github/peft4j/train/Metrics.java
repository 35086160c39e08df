package io.github.peft4j.train;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;

/**
 * Evaluation metrics on plain Java labels: accuracy, macro F1 over classes, and entity-level F1 over BIO
 * spans as seqeval computes it by default (a span starts at {@code B-X}, or at an {@code I-X} that does not
 * continue a span of type X; it ends where the next token is not {@code I-X}; a predicted span counts only if
 * its type, start and end all equal a gold span's).
 */
public final class Metrics {
    private Metrics() {}

    /**
     * @param gold gold class ids
     * @param pred predicted class ids, same length
     * @return the fraction equal (0 for no items)
     */
    public static double accuracy(int[] gold, int[] pred) {
        check(gold, pred);
        int right = 0;
        for (int i = 0; i < gold.length; i++) {
            if (gold[i] == pred[i]) {
                right++;
            }
        }
        return gold.length == 0 ? 0 : (double) right / gold.length;
    }

    /**
     * Macro F1 as scikit-learn's {@code f1_score(average="macro")}: the unweighted mean of the per-class F1
     * over every class that occurs in gold or predictions; a class with no true positive has F1 0.
     *
     * @param gold gold class ids
     * @param pred predicted class ids, same length
     * @return the macro F1 (0 for no items)
     */
    public static double macroF1(int[] gold, int[] pred) {
        check(gold, pred);
        Map<Integer, int[]> counts = new HashMap<>(); // tp, fp, fn
        for (int i = 0; i < gold.length; i++) {
            int[] g = counts.computeIfAbsent(gold[i], k -> new int[3]);
            int[] p = counts.computeIfAbsent(pred[i], k -> new int[3]);
            if (gold[i] == pred[i]) {
                g[0]++;
            } else {
                p[1]++;
                g[2]++;
            }
        }
        if (counts.isEmpty()) {
            return 0;
        }
        double sum = 0;
        for (int[] c : counts.values()) {
            sum += f1(c[0], c[1], c[2]);
        }
        return sum / counts.size();
    }

    /**
     * Entity-level micro F1 over BIO spans of all sequences (seqeval's default mode).
     *
     * @param gold per sequence, the gold tags ({@code O}, {@code B-PER}, {@code I-PER}, ...)
     * @param pred per sequence, the predicted tags, same lengths
     * @return the F1 (0 if there are no gold and no predicted spans)
     */
    public static double entityF1(List<List<String>> gold, List<List<String>> pred) {
        if (gold.size() != pred.size()) {
            throw new IllegalArgumentException("gold has " + gold.size() + " sequences, predictions " + pred.size());
        }
        Set<Span> g = new HashSet<>();
        Set<Span> p = new HashSet<>();
        for (int i = 0; i < gold.size(); i++) {
            if (gold.get(i).size() != pred.get(i).size()) {
                throw new IllegalArgumentException("sequence " + i + ": gold has " + gold.get(i).size()
                        + " tags, predictions " + pred.get(i).size());
            }
            g.addAll(spans(i, gold.get(i)));
            p.addAll(spans(i, pred.get(i)));
        }
        int tp = 0;
        for (Span s : p) {
            if (g.contains(s)) {
                tp++;
            }
        }
        return f1(tp, p.size() - tp, g.size() - tp);
    }

    /** An entity: sequence, type, first and last token. */
    record Span(int seq, String type, int start, int end) {}

    /**
     * The BIO spans of one sequence.
     *
     * @param seq the sequence index
     * @param tags the tags
     * @return the spans
     */
    static List<Span> spans(int seq, List<String> tags) {
        List<Span> out = new ArrayList<>();
        String type = null;
        int start = -1;
        for (int i = 0; i <= tags.size(); i++) {
            String tag = i < tags.size() ? Objects.requireNonNull(tags.get(i), "tag") : "O";
            String prefix = tag.length() >= 2 && tag.charAt(1) == '-' ? tag.substring(0, 1) : tag.equals("O") ? "O" : "B";
            String t = tag.length() >= 2 && tag.charAt(1) == '-' ? tag.substring(2) : tag.equals("O") ? null : tag;
            boolean continues = type != null && "I".equals(prefix) && type.equals(t);
            if (type != null && !continues) {
                out.add(new Span(seq, type, start, i - 1));
                type = null;
            }
            if (!"O".equals(prefix) && !continues) {
                type = t;
                start = i;
            }
        }
        return out;
    }

    private static double f1(int tp, int fp, int fn) {
        return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    private static void check(int[] gold, int[] pred) {
        if (gold.length != pred.length) {
            throw new IllegalArgumentException("gold has " + gold.length + " labels, predictions " + pred.length);
        }
    }
}
