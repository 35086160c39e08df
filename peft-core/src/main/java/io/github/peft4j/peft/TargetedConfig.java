package io.github.peft4j.peft;

import com.fasterxml.jackson.annotation.JsonFormat;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Config of a method that wraps or selects existing modules (LoRA, IA3, adapters, BitFit): which modules it
 * targets ({@code modules_to_save}, which every method has, is in {@link PeftConfig}).
 */
public abstract class TargetedConfig extends PeftConfig {
    /** HF's {@code target_modules}. */
    protected ModuleSpec targetModules;
    /** HF's {@code exclude_modules}. */
    protected ModuleSpec excludeModules;
    /** HF's {@code layers_to_transform}: an int or a list of layer indices. */
    @JsonFormat(with = JsonFormat.Feature.ACCEPT_SINGLE_VALUE_AS_ARRAY)
    protected List<Integer> layersToTransform;
    /** HF's {@code layers_pattern}: name(s) of the layer list ({@code layers}, {@code h}). */
    @JsonFormat(with = JsonFormat.Feature.ACCEPT_SINGLE_VALUE_AS_ARRAY)
    protected List<String> layersPattern;

    /**
     * @param peftType the method's {@code peft_type}
     */
    protected TargetedConfig(String peftType) {
        super(peftType);
    }

    /** @return the target selection */
    public ModuleSpec targetModules() {
        return targetModules;
    }

    /**
     * @param spec the target selection
     * @return this
     */
    public TargetedConfig targetModules(ModuleSpec spec) {
        this.targetModules = spec;
        return this;
    }

    /**
     * @param names target names or dotted suffixes
     * @return this
     */
    public TargetedConfig targetModules(String... names) {
        return targetModules(ModuleSpec.names(names));
    }

    /** @return the exclusion, or null */
    public ModuleSpec excludeModules() {
        return excludeModules;
    }

    /**
     * @param spec modules never targeted
     * @return this
     */
    public TargetedConfig excludeModules(ModuleSpec spec) {
        this.excludeModules = spec;
        return this;
    }

    /** @return layer indices to transform, or null for all */
    public List<Integer> layersToTransform() {
        return layersToTransform;
    }

    /**
     * @param layers layer indices to transform
     * @return this
     */
    public TargetedConfig layersToTransform(List<Integer> layers) {
        this.layersToTransform = layers;
        return this;
    }

    /** @return the layer-list name pattern(s), or null */
    public List<String> layersPattern() {
        return layersPattern;
    }

    /**
     * @param patterns names of the layer list
     * @return this
     */
    public TargetedConfig layersPattern(List<String> patterns) {
        this.layersPattern = patterns;
        return this;
    }

    @Override
    public TargetedConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    /**
     * Looks a module up in a per-module pattern map such as {@code rank_pattern}: a key {@code k} applies
     * to a module path that fully matches {@code (.*\.)?(k)$}; the first matching key wins.
     *
     * @param pattern the map (may be null)
     * @param path the module path
     * @param def the value when no key matches
     * @param <V> value type
     * @return the value
     */
    public static <V> V patternValue(Map<String, V> pattern, String path, V def) {
        if (pattern != null) {
            for (Map.Entry<String, V> e : pattern.entrySet()) {
                if (Pattern.compile("(.*\\.)?(" + e.getKey() + ")$").matcher(path).matches()) {
                    return e.getValue();
                }
            }
        }
        return def;
    }
}
