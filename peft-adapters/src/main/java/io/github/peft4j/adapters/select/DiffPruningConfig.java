package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * Config of diff pruning ({@code peft_type: DIFF_PRUNING}, peft4j's own; Guo, Rush and Kim 2021): a learned mask.
 * Each target weight gets a difference {@code w} and gate logits {@code log_alpha} of its shape; the model uses
 * {@code W + z ⊙ w} with {@code z} a hard-concrete gate (Louizos et al. 2018: temperature {@code beta = 2/3},
 * stretch {@code (gamma, zeta) = (-0.1, 1.1)}). Training adds {@code l0_lambda} times the expected fraction of open
 * gates, {@code mean(sigmoid(log_alpha - beta * ln(-gamma / zeta)))}, to the loss (through the trainer's extra-loss
 * hook), so the mask of entries that change is learned together with the change. {@code target_modules} follows HF's
 * rules; absent, every linear / Conv1D layer except the output head.
 *
 * <p>The file {@code adapter_model.safetensors} holds per target {@code base_model.model.<module path>.diff_weight}
 * and {@code ...diff_log_alpha} (fp32, the weight's stored shape), so training can continue from it.
 */
public class DiffPruningConfig extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "DIFF_PRUNING";
    /** Weight of the expected-L0 penalty (a fraction in [0, 1]) in the loss. */
    protected double l0Lambda = 0.1;
    /** Initial gate logit of every entry (0: each gate open with probability 0.83 at the start). */
    protected double logAlphaInit = 0.0;

    /** A config with the defaults. */
    public DiffPruningConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code l0_lambda} */
    public double l0Lambda() {
        return l0Lambda;
    }

    /**
     * @param lambda the penalty weight, &gt;= 0
     * @return this
     */
    public DiffPruningConfig l0Lambda(double lambda) {
        this.l0Lambda = lambda;
        return this;
    }

    /** @return {@code log_alpha_init} */
    public double logAlphaInit() {
        return logAlphaInit;
    }

    /**
     * @param v the initial gate logit
     * @return this
     */
    public DiffPruningConfig logAlphaInit(double v) {
        this.logAlphaInit = v;
        return this;
    }

    @Override
    public DiffPruningConfig targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public DiffPruningConfig targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public DiffPruningConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    @Override
    public void validate(String where) {
        if (!(l0Lambda >= 0) || Double.isInfinite(l0Lambda)) {
            throw new PeftException(where + ": l0_lambda must be a finite number >= 0, got " + l0Lambda);
        }
        if (!Double.isFinite(logAlphaInit)) {
            throw new PeftException(where + ": log_alpha_init must be finite, got " + logAlphaInit);
        }
    }
}
