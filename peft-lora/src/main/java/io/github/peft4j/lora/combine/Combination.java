package io.github.peft4j.lora.combine;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.WeightedCombiner;
import java.util.Locale;

/**
 * The options of a weighted LoRA combination, as HF PEFT 0.21's {@code add_weighted_adapter} arguments
 * ({@code combination_type}, {@code svd_rank}, {@code svd_clamp}, {@code density}, {@code majority_sign_method}),
 * plus the seed of the random masks of the {@code dare_*} types (HF draws them from torch's global generator).
 * Immutable; every {@code with}-style setter returns a new value.
 *
 * <pre>{@code
 * peft.addWeightedAdapter("mix", List.of("a", "b"), new double[] {0.8, -0.5},
 *         Combination.of(CombinationType.TIES).density(0.5));
 * }</pre>
 */
public final class Combination implements WeightedCombiner.Spec {
    /** HF's {@code majority_sign_method}. */
    public enum MajoritySign {
        /** The sign of the sum of the (pruned) tensors. */
        TOTAL,
        /** The sign held by more of the tensors. */
        FREQUENCY;

        /**
         * @param name {@code total} or {@code frequency}
         * @return the method
         */
        public static MajoritySign parse(String name) {
            try {
                return valueOf(name.trim().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new PeftException("majority_sign_method '" + name + "': expected total or frequency");
            }
        }
    }

    private final CombinationType type;
    private final Integer svdRank;
    private final Double svdClamp;
    private final Double density;
    private final MajoritySign majoritySign;
    private final long seed;

    private Combination(CombinationType type, Integer svdRank, Double svdClamp, Double density, MajoritySign sign,
            long seed) {
        this.type = type;
        this.svdRank = svdRank;
        this.svdClamp = svdClamp;
        this.density = density;
        this.majoritySign = sign;
        this.seed = seed;
    }

    /**
     * @param type the combination type
     * @return a combination with HF's defaults (no svd rank, no clamp, no density, total, seed 0)
     */
    public static Combination of(CombinationType type) {
        return new Combination(type, null, null, null, MajoritySign.TOTAL, 0);
    }

    /** @param r the rank of an {@code *svd} result (HF's {@code svd_rank}; default the sources' largest) @return a copy */
    public Combination svdRank(int r) {
        if (r < 1) {
            throw new PeftException("svd_rank must be >= 1, got " + r);
        }
        return new Combination(type, r, svdClamp, density, majoritySign, seed);
    }

    /** @param q the quantile in [0, 1] of the SVD factors' values to clamp them to ({@code svd_clamp}) @return a copy */
    public Combination svdClamp(double q) {
        if (!(q >= 0 && q <= 1)) {
            throw new PeftException("svd_clamp must be a quantile in [0, 1], got " + q);
        }
        return new Combination(type, svdRank, q, density, majoritySign, seed);
    }

    /** @param d the fraction of values kept by pruning, >= 0 (1 or more: no pruning, as HF) @return a copy */
    public Combination density(double d) {
        if (!(d >= 0)) {
            throw new PeftException("density must be >= 0, got " + d);
        }
        return new Combination(type, svdRank, svdClamp, d, majoritySign, seed);
    }

    /** @param m the sign election of the ties types @return a copy */
    public Combination majoritySign(MajoritySign m) {
        return new Combination(type, svdRank, svdClamp, density, m, seed);
    }

    /** @param s the seed of the dare masks @return a copy */
    public Combination seed(long s) {
        return new Combination(type, svdRank, svdClamp, density, majoritySign, s);
    }

    @Override
    public String type() {
        return type.hfName();
    }

    /** @return the combination type */
    public CombinationType combinationType() {
        return type;
    }

    /** @return the svd rank, or null for the default */
    public Integer svdRank() {
        return svdRank;
    }

    /** @return the clamp quantile, or null for none */
    public Double svdClamp() {
        return svdClamp;
    }

    /** @return the density, or null where unset */
    public Double density() {
        return density;
    }

    /** @return the majority sign method */
    public MajoritySign majoritySign() {
        return majoritySign;
    }

    /** @return the dare seed */
    public long seed() {
        return seed;
    }

    /**
     * The LoRA implementation of {@link WeightedCombiner} (what {@code LoraMethod} delegates to).
     *
     * @return a combiner
     */
    public static WeightedCombiner combiner() {
        return new LoraCombiner();
    }

    /** @return the same options with another type (HF turns a single source into linear) */
    Combination withType(CombinationType t) {
        return new Combination(t, svdRank, svdClamp, density, majoritySign, seed);
    }

    @Override
    public String toString() {
        return type.hfName() + (svdRank != null ? " svd_rank=" + svdRank : "") + (svdClamp != null ? " svd_clamp=" + svdClamp : "")
                + (density != null ? " density=" + density : "") + (type.signElection ? " majority_sign_method="
                + majoritySign.name().toLowerCase(Locale.ROOT) : "") + (type.isRandom() ? " seed=" + seed : "");
    }
}
