package io.github.peft4j.adapters;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.Targets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * The BitFit method ({@code peft_type: BITFIT}): selects the {@code bias} parameters of existing modules and
 * makes them the adapter's parameters (see {@link BitFitAdapter} for the file format). Because the biases are
 * trained in place, a model holds at most one BitFit adapter at a time.
 */
public final class BitFitMethod implements PeftMethod {
    private static final String KINDS = "modules with a bias (linear, Conv1D, layer norm)";

    /** Used by {@link java.util.ServiceLoader}. */
    public BitFitMethod() {}

    @Override
    public String peftType() {
        return BitFitConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return BitFitConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        BitFitConfig c = (BitFitConfig) config;
        TransformerModel model = context.model();
        String existing = context.adapters().values().stream().filter(a -> a instanceof BitFitAdapter)
                .map(Adapter::name).findFirst().orElse(null);
        if (existing != null) {
            throw new PeftException("BITFIT: this model already has a BitFit adapter '" + existing + "' (it trains the biases"
                    + " in place, so only one can exist); delete it before adding '" + name + "'");
        }
        Map<String, Param> biases = new LinkedHashMap<>();
        for (String path : select(model, c)) {
            biases.put(path + ".bias", bias(Targets.innermost(model.resolve(path))));
        }
        return new BitFitAdapter(name, c, biases);
    }

    private static Param bias(Module m) {
        return m.localParameters().get("bias");
    }

    /**
     * The selected module paths: {@link Targets#select} rules, or every module with a bias when no targets are
     * given. Modules trained whole by the adapter ({@link Targets#modulesToSave}: its {@code modules_to_save}
     * and a classification head) and the modules inside them are never selected: their biases are trained
     * through the modules_to_save copy, so the original bias would be a parameter that does nothing.
     */
    static List<String> select(TransformerModel model, BitFitConfig c) {
        List<String> whole = Targets.modulesToSave(model, c);
        Predicate<String> outsideWhole = p -> whole.stream().noneMatch(w -> p.equals(w) || p.startsWith(w + "."));
        if (c.targetModules() != null) {
            List<String> chosen = Targets.select(model, c, m -> bias(m) != null, KINDS).stream().filter(outsideWhole).toList();
            if (chosen.isEmpty()) {
                throw new PeftException("BITFIT: target_modules " + c.targetModules() + " selects only modules trained whole"
                        + " through modules_to_save " + whole + "; no bias is left to train");
            }
            return chosen;
        }
        List<String> all = Targets.candidates(model).entrySet().stream()
                .filter(e -> bias(Targets.innermost(e.getValue())) != null)
                .map(Map.Entry::getKey)
                .filter(outsideWhole)
                .toList();
        if (all.isEmpty()) {
            throw new PeftException("BITFIT: " + model.architecture() + " has no module with a bias parameter"
                    + " (outside modules_to_save " + whole + ")");
        }
        // reuse exclude_modules / layers_to_transform filtering: a copy whose targets are exactly these paths
        BitFitConfig every = PeftMethods.copy(c);
        every.targetModules(ModuleSpec.regex(all.stream().map(Pattern::quote).collect(Collectors.joining("|"))));
        return Targets.select(model, every, m -> bias(m) != null, KINDS);
    }
}
