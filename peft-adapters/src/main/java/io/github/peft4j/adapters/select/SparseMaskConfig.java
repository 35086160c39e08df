package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * Config of a fixed sparse mask ({@code peft_type: SPARSE_MASK}, peft4j's own): in each target weight, train only the
 * {@code fraction} of its entries with the smallest ({@code criterion: "smallest"}, the reference notes' rule) or
 * largest ({@code "largest"}) magnitude in the base model; the mask is fixed at attach time. {@code target_modules}
 * follows HF's rules; absent, every linear / Conv1D layer except the output head ({@code all-linear}).
 *
 * <p>The file {@code adapter_model.safetensors} holds per target {@code base_model.model.<module path>.sparse_indices}
 * (int64 {@code (k)}, flat positions into the weight in its stored layout, ascending) and
 * {@code ...sparse_values} (fp32 {@code (k)}, the tuned weight values at those positions). Loading takes the mask from
 * the file.
 */
public class SparseMaskConfig extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "SPARSE_MASK";
    /** Fraction of each target weight's entries trained, in (0, 1]. */
    protected double fraction = 0.01;
    /** Which entries: {@code smallest} or {@code largest} magnitude. */
    protected String criterion = "smallest";

    /** A config with the defaults: 1 % of the smallest-magnitude entries of every linear layer. */
    public SparseMaskConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code fraction} */
    public double fraction() {
        return fraction;
    }

    /**
     * @param f the fraction of entries trained, in (0, 1]
     * @return this
     */
    public SparseMaskConfig fraction(double f) {
        this.fraction = f;
        return this;
    }

    /** @return {@code criterion}: smallest or largest */
    public String criterion() {
        return criterion;
    }

    /**
     * @param c {@code smallest} or {@code largest}
     * @return this
     */
    public SparseMaskConfig criterion(String c) {
        this.criterion = c;
        return this;
    }

    @Override
    public SparseMaskConfig targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public SparseMaskConfig targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public SparseMaskConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    /**
     * @param numel the number of entries of a weight
     * @return how many of them are trained: {@code round(fraction * numel)}, at least 1
     */
    public long count(long numel) {
        return Math.max(1, Math.min(numel, Math.round(fraction * numel)));
    }

    @Override
    public void validate(String where) {
        if (!(fraction > 0 && fraction <= 1)) {
            throw new PeftException(where + ": fraction must be in (0, 1], got " + fraction);
        }
        if (!"smallest".equals(criterion) && !"largest".equals(criterion)) {
            throw new PeftException(where + ": criterion must be \"smallest\" or \"largest\", got \"" + criterion + "\"");
        }
    }
}
