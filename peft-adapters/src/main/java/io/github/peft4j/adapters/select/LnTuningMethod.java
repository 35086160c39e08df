package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.List;
import java.util.Map;

/**
 * HF PEFT's LayerNorm tuning ({@code peft_type: LN_TUNING}, see {@link LnTuningConfig}): every parameter of the target
 * norm layers, trained in place as an {@link InPlaceAdapter}, saved under HF's {@code ln_tuning_layers} keys.
 */
public final class LnTuningMethod implements PeftMethod {
    /** Saved-key segment HF's {@code LNTuningLayer} puts before the parameter name. */
    public static final String SEGMENT = "ln_tuning_layers";
    /** HF's {@code TRANSFORMERS_MODELS_TO_LNTUNING_TARGET_MODULES_MAPPING} for the model types peft4j loads, plus bert. */
    static final Map<String, List<String>> DEFAULT_TARGETS = Map.of(
            "llama", List.of("input_layernorm", "post_attention_layernorm", "norm"),
            "mistral", List.of("input_layernorm", "post_attention_layernorm", "norm"),
            "qwen2", List.of("post_attention_layernorm"),
            "gpt2", List.of("ln_1", "ln_2", "ln_f"),
            "bert", List.of("LayerNorm"));

    /** Used by {@link java.util.ServiceLoader}. */
    public LnTuningMethod() {}

    @Override
    public String peftType() {
        return LnTuningConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return LnTuningConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        LnTuningConfig c = (LnTuningConfig) config;
        TransformerModel model = context.model();
        if (c.targetModules() == null) {
            List<String> t = DEFAULT_TARGETS.get(model.config().modelType());
            if (t == null) {
                throw new PeftException("LN_TUNING: target_modules is required for model_type '" + model.config().modelType()
                        + "' (defaults exist for " + new java.util.TreeSet<>(DEFAULT_TARGETS.keySet()) + ")");
            }
            c.targetModules(ModuleSpec.names(t.toArray(String[]::new)));
        }
        var paths = Selection.modules(model, c, Selection::hasParameters, SelectiveMethod.KINDS);
        return new InPlaceAdapter(context, name, c, Selection.parameters(model, paths, (m, k) -> true), LnTuningMethod::savedKey);
    }

    /**
     * @param key {@code <module path>.<parameter>}
     * @return HF's key {@code <module path>.ln_tuning_layers.<parameter>}
     */
    static String savedKey(String key) {
        int dot = key.lastIndexOf('.');
        return key.substring(0, dot) + "." + SEGMENT + key.substring(dot);
    }
}
