package io.github.peft4j.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * The standard processors, with Hugging Face's semantics: a repetition penalty and the sampling warpers
 * temperature, top-k and top-p. They work on a host copy of the scores (one {@code [B, V]} transfer per step),
 * which keeps ties and edge cases exact and deterministic.
 */
public final class LogitsProcessors {
    private LogitsProcessors() {}

    /**
     * HF's repetition penalty: the score of every token already in the row is divided by {@code penalty} when
     * positive and multiplied by it when negative.
     *
     * @param penalty above 0; 1 leaves scores unchanged
     * @return the processor
     */
    public static LogitsProcessor repetitionPenalty(double penalty) {
        if (!(penalty > 0)) {
            throw new PeftException("repetition penalty must be positive, got " + penalty);
        }
        float p = (float) penalty;
        return (ids, scores) -> {
            long[] seq = ids.toType(DataType.INT64, false).toLongArray();
            float[] s = scores.toType(DataType.FLOAT32, false).toFloatArray();
            int b = (int) scores.getShape().get(0);
            int v = (int) scores.getShape().get(1);
            int len = (int) ids.getShape().get(1);
            for (int r = 0; r < b; r++) {
                boolean[] seen = new boolean[v];
                for (int j = 0; j < len; j++) {
                    int t = (int) seq[r * len + j];
                    if (t < 0 || t >= v) {
                        throw new PeftException("repetition penalty: token id " + t + " in row " + r + " is outside [0, " + v + ")");
                    }
                    if (!seen[t]) {
                        seen[t] = true;
                        float x = s[r * v + t];
                        s[r * v + t] = x < 0 ? x * p : x / p;
                    }
                }
            }
            return back(scores, s);
        };
    }

    /**
     * Divides the scores by a temperature.
     *
     * @param temperature positive
     * @return the processor
     */
    public static LogitsProcessor temperature(double temperature) {
        if (!(temperature > 0)) {
            throw new PeftException("temperature must be positive, got " + temperature);
        }
        float t = (float) temperature;
        return (ids, scores) -> {
            float[] s = scores.toType(DataType.FLOAT32, false).toFloatArray();
            for (int i = 0; i < s.length; i++) {
                s[i] = s[i] / t;
            }
            return back(scores, s);
        };
    }

    /**
     * Keeps the {@code k} highest scores of each row (and every score tied with the k-th), the rest become
     * {@code -Infinity}.
     *
     * @param k at least 1
     * @return the processor
     */
    public static LogitsProcessor topK(int k) {
        if (k < 1) {
            throw new PeftException("top_k must be at least 1, got " + k);
        }
        return (ids, scores) -> {
            float[] s = scores.toType(DataType.FLOAT32, false).toFloatArray();
            int b = (int) scores.getShape().get(0);
            int v = (int) scores.getShape().get(1);
            int keep = Math.min(k, v);
            for (int r = 0; r < b; r++) {
                float[] row = Arrays.copyOfRange(s, r * v, (r + 1) * v);
                Arrays.sort(row);
                float kth = row[v - keep];
                for (int i = r * v; i < (r + 1) * v; i++) {
                    if (s[i] < kth) {
                        s[i] = Float.NEGATIVE_INFINITY;
                    }
                }
            }
            return back(scores, s);
        };
    }

    /**
     * Nucleus filtering: keeps the most likely tokens whose probabilities, added from the most likely down, first
     * exceed {@code 1 - p} of the tail, exactly as HF: sorting ascending, tokens whose cumulative probability is
     * {@code <= 1 - p} are removed, and the most likely token always stays.
     *
     * @param p in (0, 1]
     * @return the processor
     */
    public static LogitsProcessor topP(double p) {
        if (!(p > 0 && p <= 1)) {
            throw new PeftException("top_p must be in (0, 1], got " + p);
        }
        float cut = (float) (1 - p);
        return (ids, scores) -> {
            float[] s = scores.toType(DataType.FLOAT32, false).toFloatArray();
            int b = (int) scores.getShape().get(0);
            int v = (int) scores.getShape().get(1);
            for (int r = 0; r < b; r++) {
                final int off = r * v;
                Integer[] order = new Integer[v];
                for (int i = 0; i < v; i++) {
                    order[i] = i;
                }
                Arrays.sort(order, Comparator.comparingDouble(i -> s[off + i]));
                double[] probs = softmax(s, off, v);
                double cum = 0;
                for (int j = 0; j < v - 1; j++) { // the last (most likely) token always stays
                    int i = order[j];
                    cum += probs[i];
                    if ((float) cum <= cut) {
                        s[off + i] = Float.NEGATIVE_INFINITY;
                    }
                }
            }
            return back(scores, s);
        };
    }

    /**
     * The processors a config asks for, in HF's order: repetition penalty, then {@code extra} (e.g. proxy-tuning),
     * then when sampling temperature, top-k and top-p.
     *
     * @param config the settings
     * @param extra further processors, run after the penalty and before the warpers
     * @return the chain (may be empty)
     */
    public static List<LogitsProcessor> chain(GenerationConfig config, List<LogitsProcessor> extra) {
        List<LogitsProcessor> out = new ArrayList<>();
        if (config.repetitionPenalty() != 1.0) {
            out.add(repetitionPenalty(config.repetitionPenalty()));
        }
        out.addAll(extra);
        if (config.doSample()) {
            if (config.temperature() != 1.0) {
                out.add(temperature(config.temperature()));
            }
            if (config.topK() > 0) {
                out.add(topK(config.topK()));
            }
            if (config.topP() < 1.0) {
                out.add(topP(config.topP()));
            }
        }
        return out;
    }

    /**
     * Softmax of one row in double precision; {@code -Infinity} gives 0.
     *
     * @param s scores
     * @param off the row's offset
     * @param v the row's length
     * @return probabilities
     */
    static double[] softmax(float[] s, int off, int v) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < v; i++) {
            max = Math.max(max, s[off + i]);
        }
        double[] p = new double[v];
        double sum = 0;
        for (int i = 0; i < v; i++) {
            p[i] = s[off + i] == Float.NEGATIVE_INFINITY ? 0 : Math.exp(s[off + i] - max);
            sum += p[i];
        }
        for (int i = 0; i < v; i++) {
            p[i] /= sum;
        }
        return p;
    }

    private static NDArray back(NDArray like, float[] data) {
        NDArray out = Ops.owned(like.getManager(), data, like.getShape());
        return out.getDevice().equals(like.getDevice()) ? out : out.toDevice(like.getDevice(), false);
    }
}
