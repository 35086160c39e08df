package io.github.peft4j.adapters;

import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * Config of BitFit ({@code peft_type: BITFIT}, a peft4j method with no HF PEFT equivalent): train only the
 * bias vectors of the model's existing modules (Zaken et al., 2021).
 *
 * <p>{@code target_modules} is optional: absent (null), every module that has a {@code bias} parameter
 * (linear, Conv1D, layer norm) is selected, except {@code modules_to_save} and {@code exclude_modules};
 * given, HF's target rules apply (list of names or dotted suffixes, or one full-match regex) and every
 * selected module must have a bias. The adapter file is {@code adapter_model.safetensors} with one tensor
 * per selected module, key {@code base_model.model.<module path>.bias} (e.g.
 * {@code base_model.model.transformer.h.0.attn.c_attn.bias}), shape and dtype of the bias.
 */
public class BitFitConfig extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "BITFIT";

    /** A config selecting every bias of the model. */
    public BitFitConfig() {
        super(PEFT_TYPE);
    }

    @Override
    public BitFitConfig targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public BitFitConfig targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public BitFitConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }
}
