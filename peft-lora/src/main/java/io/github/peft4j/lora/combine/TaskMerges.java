package io.github.peft4j.lora.combine;

import io.github.peft4j.PeftException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * HF PEFT 0.21's {@code utils/merge_utils.py} on flat arrays of equal length (one per source): task arithmetic,
 * magnitude pruning ({@code topk} of {@code |t|}, {@code k = int(density · numel)}), random pruning
 * ({@code bernoulli(density)} masks, rescaled by {@code 1/density}), TIES' majority sign and disjoint merge. The sign
 * is elected from the pruned, <em>unweighted</em> tensors and the weights applied afterwards, as HF does.
 */
final class TaskMerges {
    private TaskMerges() {}

    /**
     * Merges source tensors with the rule of a combination type.
     *
     * @param type the type (its pruning and sign election are used)
     * @param tensors one flat array per source, of equal length
     * @param weights one weight per source
     * @param density the kept fraction (ignored when the type does not prune)
     * @param sign the sign election
     * @param random the generator of the dare masks
     * @return the merged tensor
     */
    static double[] merge(CombinationType type, List<double[]> tensors, double[] weights, double density,
            Combination.MajoritySign sign, SplittableRandom random) {
        List<double[]> pruned = new ArrayList<>(tensors.size());
        for (double[] t : tensors) {
            pruned.add(switch (type.prune) {
                case NONE -> t;
                case MAGNITUDE -> magnitudePrune(t, density);
                case RANDOM -> randomPrune(t, density, random);
            });
        }
        return type.signElection ? disjointMerge(pruned, weights, sign) : weightedSum(pruned, weights);
    }

    /** HF's {@code task_arithmetic}: {@code Σ w_i t_i}. */
    static double[] weightedSum(List<double[]> tensors, double[] weights) {
        double[] out = new double[tensors.get(0).length];
        for (int i = 0; i < tensors.size(); i++) {
            double[] t = tensors.get(i);
            double w = weights[i];
            for (int j = 0; j < out.length; j++) {
                out[j] += w * t[j];
            }
        }
        return out;
    }

    /** HF's {@code magnitude_based_pruning}: keep the {@code int(density · n)} entries of largest magnitude. */
    static double[] magnitudePrune(double[] t, double density) {
        if (density >= 1) {
            return t;
        }
        int k = (int) (density * t.length);
        double[] out = new double[t.length];
        if (k == 0) {
            return out;
        }
        double[] abs = new double[t.length];
        for (int i = 0; i < t.length; i++) {
            abs[i] = Math.abs(t[i]);
        }
        double[] sorted = abs.clone();
        Arrays.sort(sorted);
        double threshold = sorted[t.length - k]; // the k-th largest magnitude
        int above = 0;
        for (double a : abs) {
            if (a > threshold) {
                above++;
            }
        }
        int ties = k - above; // entries equal to the threshold that still fit (torch.topk breaks ties its own way)
        for (int i = 0; i < t.length; i++) {
            if (abs[i] > threshold || (abs[i] == threshold && ties-- > 0)) {
                out[i] = t[i];
            }
        }
        return out;
    }

    /** HF's {@code random_pruning} with {@code rescale=True}: {@code t · bernoulli(density) / density}. */
    static double[] randomPrune(double[] t, double density, SplittableRandom random) {
        if (density >= 1) {
            return t;
        }
        double[] out = new double[t.length];
        for (int i = 0; i < t.length; i++) {
            if (random.nextDouble() < density) {
                out[i] = t[i] / density;
            }
        }
        return out;
    }

    /**
     * HF's {@code calculate_majority_sign_mask} + {@code disjoint_merge}: per entry, the majority sign ({@code >= 0}
     * counts as +) of {@code Σ t_i} (total) or {@code Σ sign(t_i)} (frequency); the weighted tensors that carry it are
     * averaged ({@code Σ w_i t_i [sign t_i = s] / max(1, #agreeing)}); zeros carry no sign.
     */
    static double[] disjointMerge(List<double[]> tensors, double[] weights, Combination.MajoritySign method) {
        int n = tensors.get(0).length;
        double[] out = new double[n];
        for (int j = 0; j < n; j++) {
            double magnitude = 0;
            for (double[] t : tensors) {
                magnitude += method == Combination.MajoritySign.TOTAL ? t[j] : Math.signum(t[j]);
            }
            double majority = magnitude >= 0 ? 1 : -1;
            double sum = 0;
            int kept = 0;
            for (int i = 0; i < tensors.size(); i++) {
                double v = tensors.get(i)[j];
                if (Math.signum(v) == majority) {
                    sum += weights[i] * v;
                    kept++;
                }
            }
            out[j] = sum / Math.max(1, kept);
        }
        return out;
    }

    /** @throws PeftException where a pruning type has no usable density */
    static double checkDensity(CombinationType type, Double density) {
        if (!type.usesDensity()) {
            return 1;
        }
        if (density == null) {
            throw new PeftException("combination type " + type.hfName() + " needs a density (the fraction of values kept,"
                    + " in [0, 1])");
        }
        return density;
    }
}
