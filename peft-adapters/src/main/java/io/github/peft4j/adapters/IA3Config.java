package io.github.peft4j.adapters;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * Config of HF PEFT's IA3 ({@code peft_type: IA3}): a learned vector {@code l} per target projection that
 * scales its output ({@code y = (W x + b) ⊙ l}) or, for {@code feedforward_modules}, its input
 * ({@code y = W (x ⊙ l) + b}).
 *
 * <p>JSON keys as HF PEFT writes them: {@code target_modules}, {@code feedforward_modules},
 * {@code fan_in_fan_out}, {@code init_ia3_weights}, {@code modules_to_save}, {@code exclude_modules}, plus the
 * common keys. When {@code target_modules} is absent the HF defaults for the model type are used (and
 * written back into this config, as HF PEFT does). HF's IA3 has no {@code layers_to_transform} or
 * {@code layers_pattern}: they are neither written nor read (HF PEFT warns about unknown keys and would ignore them).
 */
@JsonIgnoreProperties(value = {"layers_to_transform", "layers_pattern"}, ignoreUnknown = true)
public class IA3Config extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "IA3";
    /** HF's {@code feedforward_modules}: targets whose input (not output) is scaled. */
    protected ModuleSpec feedforwardModules;
    /** HF's {@code fan_in_fan_out}; corrected with a warning to the layer's real layout (Conv1D: true). */
    protected boolean fanInFanOut;
    /** HF's {@code init_ia3_weights}: true starts every vector at ones (the identity), false at N(0, 1). */
    protected boolean initIa3Weights = true;

    /** An IA3 config with HF's defaults. */
    public IA3Config() {
        super(PEFT_TYPE);
    }

    /** @return the feed-forward selection, or null */
    public ModuleSpec feedforwardModules() {
        return feedforwardModules;
    }

    /**
     * @param spec targets whose input is scaled (must be among the targets)
     * @return this
     */
    public IA3Config feedforwardModules(ModuleSpec spec) {
        this.feedforwardModules = spec;
        return this;
    }

    /**
     * @param names feed-forward module names or dotted suffixes
     * @return this
     */
    public IA3Config feedforwardModules(String... names) {
        return feedforwardModules(ModuleSpec.names(names));
    }

    /** @return {@code fan_in_fan_out} */
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    /**
     * @param on whether target weights are stored {@code (in, out)} (GPT-2 Conv1D)
     * @return this
     */
    public IA3Config fanInFanOut(boolean on) {
        this.fanInFanOut = on;
        return this;
    }

    /** @return {@code init_ia3_weights} */
    public boolean initIa3Weights() {
        return initIa3Weights;
    }

    /**
     * @param ones true to start at ones (identity), false for random normal values
     * @return this
     */
    public IA3Config initIa3Weights(boolean ones) {
        this.initIa3Weights = ones;
        return this;
    }

    @Override
    public IA3Config targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public IA3Config targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public IA3Config modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    /**
     * Whether a target module scales its input.
     *
     * @param path a module path
     * @return true if {@code feedforward_modules} selects it
     */
    public boolean isFeedforward(String path) {
        return feedforwardModules != null && feedforwardModules.matches(path);
    }

    /** HF's rule: with both given as lists, {@code feedforward_modules} must be a subset of {@code target_modules}. */
    @Override
    public void validate(String where) {
        if (layersToTransform != null || layersPattern != null) {
            throw new PeftException(where + ": IA3 has no layers_to_transform / layers_pattern in HF PEFT (an adapter"
                    + " saved with them would load differently there); select layers with target_modules instead");
        }
        if (targetModules != null && feedforwardModules != null && !targetModules.isRegex()
                && !feedforwardModules.isRegex()
                && !targetModules.nameList().containsAll(feedforwardModules.nameList())) {
            throw new PeftException(where + ": IA3 feedforward_modules " + feedforwardModules
                    + " must be a subset of target_modules " + targetModules);
        }
    }
}
