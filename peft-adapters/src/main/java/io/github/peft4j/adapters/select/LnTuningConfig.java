package io.github.peft4j.adapters.select;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * HF PEFT's {@code LNTuningConfig} ({@code peft_type: LN_TUNING}): train the normalisation layers (Zhao et al. 2023,
 * "Tuning LayerNorm in Attention"). Keys as HF: {@code target_modules} (absent: HF's per-model-type defaults, e.g.
 * llama {@code input_layernorm, post_attention_layernorm, norm}, gpt2 {@code ln_1, ln_2, ln_f}; peft4j adds bert
 * {@code LayerNorm}, which HF lacks), {@code exclude_modules}, {@code modules_to_save}. Every parameter of a target
 * module is trained (weight, and bias where it has one).
 *
 * <p>HF keeps the original and a trained deep copy of each layer; peft4j trains the layer in place (its originals
 * spilled to disk, see {@link InPlaceAdapter}) and writes HF's file: {@code adapter_model.safetensors} with keys
 * {@code base_model.model.<module path>.ln_tuning_layers.<parameter>} (e.g.
 * {@code base_model.model.model.layers.0.input_layernorm.ln_tuning_layers.weight}), shape and dtype of the parameter.
 */
@JsonIgnoreProperties(value = {"layers_to_transform", "layers_pattern"}, ignoreUnknown = true)
public class LnTuningConfig extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "LN_TUNING";

    /** A config with HF's defaults. */
    public LnTuningConfig() {
        super(PEFT_TYPE);
    }

    @Override
    public LnTuningConfig targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public LnTuningConfig targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public LnTuningConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }
}
