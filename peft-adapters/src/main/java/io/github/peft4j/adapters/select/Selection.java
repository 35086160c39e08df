package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.TargetedConfig;
import io.github.peft4j.peft.Targets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiPredicate;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * The selection rules the in-place methods share: which modules a config targets (HF's target rules, or every
 * eligible module when {@code target_modules} is absent), never inside a module trained whole through
 * {@code modules_to_save} (a classification head included), and which of their parameters are taken.
 */
public final class Selection {
    private Selection() {}

    /**
     * The selected module paths: {@link Targets#select} rules with the config's {@code exclude_modules} and
     * {@code layers_to_transform}; when {@code target_modules} is null, every eligible module. Modules trained whole
     * by the adapter ({@link Targets#modulesToSave}) and the modules inside them are never selected: they are trained
     * through their modules_to_save copy, so the original would be a parameter that does nothing.
     *
     * @param model the model
     * @param c the config
     * @param eligible which modules (behind any wrapper) the method can select
     * @param kinds a description of those modules, for messages
     * @return the paths, in model order (not empty)
     */
    public static List<String> modules(TransformerModel model, TargetedConfig c, Predicate<Module> eligible, String kinds) {
        List<String> whole = Targets.modulesToSave(model, c);
        Predicate<String> outsideWhole = p -> whole.stream().noneMatch(w -> p.equals(w) || p.startsWith(w + "."));
        if (c.targetModules() != null) {
            List<String> chosen = Targets.select(model, c, eligible, kinds).stream().filter(outsideWhole).toList();
            if (chosen.isEmpty()) {
                throw new PeftException(c.peftType() + ": target_modules " + c.targetModules() + " selects only modules"
                        + " trained whole through modules_to_save " + whole + "; nothing is left to train");
            }
            return chosen;
        }
        List<String> all = Targets.candidates(model).entrySet().stream()
                .filter(e -> eligible.test(Targets.innermost(e.getValue())))
                .map(Map.Entry::getKey)
                .filter(outsideWhole)
                .toList();
        if (all.isEmpty()) {
            throw new PeftException(c.peftType() + ": " + model.architecture() + " has no " + kinds
                    + " (outside modules_to_save " + whole + ")");
        }
        // reuse exclude_modules / layers_to_transform filtering: a copy whose targets are exactly these paths
        TargetedConfig every = PeftMethods.copy(c);
        every.targetModules(ModuleSpec.regex(all.stream().map(Pattern::quote).collect(Collectors.joining("|"))));
        return Targets.select(model, every, eligible, kinds);
    }

    /**
     * The parameters of selected modules (behind any wrapper another method put there), keyed
     * {@code <module path>.<parameter name>}.
     *
     * @param model the model
     * @param paths the selected module paths
     * @param take which (module, local parameter name) pairs are taken
     * @return key to parameter, in model order
     */
    public static Map<String, Param> parameters(TransformerModel model, List<String> paths, BiPredicate<Module, String> take) {
        Map<String, Param> out = new LinkedHashMap<>();
        for (String path : paths) {
            Module inner = Targets.innermost(model.resolve(path));
            inner.localParameters().forEach((k, p) -> {
                if (take.test(inner, k)) {
                    out.put(path + "." + k, p);
                }
            });
        }
        return out;
    }

    /**
     * @param m a module
     * @return whether it has parameters of its own (a linear layer, a norm, an embedding; not a container)
     */
    public static boolean hasParameters(Module m) {
        return !m.localParameters().isEmpty();
    }

    /**
     * The last {@code k} layer indices of a model.
     *
     * @param model the model
     * @param k how many, 1 .. number of layers
     * @param where the config key, for messages
     * @return {@code [L-k, ..., L-1]}
     */
    public static List<Integer> lastLayers(TransformerModel model, int k, String where) {
        int layers = model.numLayers();
        if (k < 1 || k > layers) {
            throw new PeftException(where + ": " + k + " is out of range 1.." + layers + " (" + model.architecture()
                    + " has " + layers + " layers)");
        }
        List<Integer> out = new ArrayList<>();
        for (int i = layers - k; i < layers; i++) {
            out.add(i);
        }
        return out;
    }
}
