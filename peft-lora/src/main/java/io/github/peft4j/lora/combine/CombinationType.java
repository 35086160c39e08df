package io.github.peft4j.lora.combine;

import io.github.peft4j.PeftException;
import java.util.Arrays;
import java.util.Locale;

/**
 * HF PEFT 0.21's {@code combination_type} values of {@code add_weighted_adapter}. The first group combines the
 * sources' {@code A} and {@code B} factors separately (each weight split as {@code sqrt(|w·s|)}, its sign on
 * {@code A}); {@code cat} stacks the factors; the {@code *svd} group combines the dense updates
 * {@code ΔW_i = s_i·B_i A_i} and factors the result with a truncated SVD.
 */
public enum CombinationType {
    /** Weighted sum of the factors (task arithmetic on A and on B). */
    LINEAR(Kind.FACTORS, Prune.NONE, false),
    /** Concatenation of the factors: rank = Σ ranks, exact. */
    CAT(Kind.CAT, Prune.NONE, false),
    /** Truncated SVD of {@code Σ w_i ΔW_i}. */
    SVD(Kind.DENSE, Prune.NONE, false),
    /** TIES on the factors: magnitude pruning, sign election, disjoint mean. */
    TIES(Kind.FACTORS, Prune.MAGNITUDE, true),
    /** TIES on the dense updates, then SVD. */
    TIES_SVD(Kind.DENSE, Prune.MAGNITUDE, true),
    /** DARE on the factors: random pruning with rescale {@code 1/density}, weighted sum. */
    DARE_LINEAR(Kind.FACTORS, Prune.RANDOM, false),
    /** DARE pruning, then TIES' sign election and disjoint mean, on the factors. */
    DARE_TIES(Kind.FACTORS, Prune.RANDOM, true),
    /** DARE on the dense updates, then SVD. */
    DARE_LINEAR_SVD(Kind.DENSE, Prune.RANDOM, false),
    /** DARE + TIES on the dense updates, then SVD. */
    DARE_TIES_SVD(Kind.DENSE, Prune.RANDOM, true),
    /** Magnitude pruning of each factor, weighted sum. */
    MAGNITUDE_PRUNE(Kind.FACTORS, Prune.MAGNITUDE, false),
    /** Magnitude pruning of each dense update, weighted sum, then SVD. */
    MAGNITUDE_PRUNE_SVD(Kind.DENSE, Prune.MAGNITUDE, false);

    /** What is combined. */
    enum Kind { FACTORS, CAT, DENSE }

    /** How each source tensor is pruned before merging. */
    enum Prune { NONE, MAGNITUDE, RANDOM }

    final Kind kind;
    final Prune prune;
    final boolean signElection;

    CombinationType(Kind kind, Prune prune, boolean signElection) {
        this.kind = kind;
        this.prune = prune;
        this.signElection = signElection;
    }

    /** @return HF's spelling, e.g. {@code dare_ties_svd} */
    public String hfName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** @return whether this type needs {@code density} */
    public boolean usesDensity() {
        return prune != Prune.NONE;
    }

    /** @return whether this type draws random masks (dare_*): reproducible with a seed, not equal to HF's draws */
    public boolean isRandom() {
        return prune == Prune.RANDOM;
    }

    /** @return whether the result is a truncated SVD (rank {@code svd_rank}, default the sources' largest) */
    public boolean isSvd() {
        return kind == Kind.DENSE;
    }

    /**
     * @param name HF's spelling (case-insensitive, {@code -} accepted for {@code _})
     * @return the type
     */
    public static CombinationType parse(String name) {
        String n = name.trim().toUpperCase(Locale.ROOT).replace('-', '_');
        for (CombinationType t : values()) {
            if (t.name().equals(n)) {
                return t;
            }
        }
        throw new PeftException("combination type '" + name + "': expected one of "
                + Arrays.stream(values()).map(CombinationType::hfName).toList());
    }
}
