package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.ArrayList;
import java.util.List;

/**
 * Config of parameter selection by rule ({@code peft_type: SELECTIVE}, a peft4j method with no HF PEFT equivalent):
 * train existing parameters in place, chosen by module-name pattern. {@code target_modules} follows HF's rules (a list
 * of names or dotted suffixes, or one full-match regex such as {@code .*encoder\.layer\.5\..*}); absent, every module
 * with parameters of its own is a candidate. {@code exclude_modules}, {@code layers_to_transform} and
 * {@code layers_pattern} filter as in HF. {@code parameter_names} keeps only parameters of those local names
 * ({@code ["weight"]}, {@code ["bias"]}); absent, every parameter of a selected module is trained. The file is
 * {@code adapter_model.safetensors} with one tensor per selected parameter, key
 * {@code base_model.model.<module path>.<parameter>}, its shape and dtype.
 */
public class SelectiveConfig extends TargetedConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "SELECTIVE";
    /** Local names of the parameters to train in each selected module, or null for all. */
    protected List<String> parameterNames;

    /** A config selecting every parameter of the model (set {@code target_modules} to narrow it). */
    public SelectiveConfig() {
        super(PEFT_TYPE);
    }

    /**
     * @param peftType the {@code peft_type} of a subclass
     */
    protected SelectiveConfig(String peftType) {
        super(peftType);
    }

    /** @return the parameter names kept, or null for all */
    public List<String> parameterNames() {
        return parameterNames;
    }

    /**
     * @param names local parameter names to train ({@code weight}, {@code bias}), or null for all
     * @return this
     */
    public SelectiveConfig parameterNames(List<String> names) {
        this.parameterNames = names == null ? null : new ArrayList<>(names);
        return this;
    }

    @Override
    public SelectiveConfig targetModules(ModuleSpec spec) {
        super.targetModules(spec);
        return this;
    }

    @Override
    public SelectiveConfig targetModules(String... names) {
        super.targetModules(names);
        return this;
    }

    @Override
    public SelectiveConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    @Override
    public void validate(String where) {
        if (parameterNames != null && (parameterNames.isEmpty() || parameterNames.stream().anyMatch(n -> n == null || n.isBlank()))) {
            throw new PeftException(where + ": parameter_names must be a non-empty list of parameter names (e.g. [\"weight\"]),"
                    + " got " + parameterNames);
        }
    }
}
