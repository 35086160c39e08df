package io.github.peft4j.peft;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Chooses the modules a method adapts, with HF PEFT's rules: list entries match a path exactly or as a
 * dotted suffix; a single string is a full-match regex; {@code all-linear} is every linear layer except the
 * output heads; then {@code exclude_modules} and {@code layers_to_transform} filter. Unlike HF PEFT, a list
 * entry that matches no module is an error naming the entry.
 */
public final class Targets {
    private static final Set<String> HF_HEAD_NAMES = Set.of("classifier", "score");
    private static final Pattern DEFAULT_LAYER = Pattern.compile(".*\\.[^.]*\\.(\\d+)\\..*");

    private Targets() {}

    /**
     * The adaptable modules of a model by path: every module except the internals of wrappers a method put
     * there (a wrapper itself is listed under the original's path).
     *
     * @param model the model
     * @return path to module, in model order
     */
    public static Map<String, Module> candidates(TransformerModel model) {
        Map<String, Module> out = new LinkedHashMap<>();
        String skip = null;
        for (Map.Entry<String, Module> e : model.modules().entrySet()) {
            String path = e.getKey();
            if (skip != null && path.startsWith(skip)) {
                continue;
            }
            skip = e.getValue() instanceof AdapterLayer ? path + "." : null;
            out.put(path, e.getValue());
        }
        return out;
    }

    /**
     * Selects target paths.
     *
     * @param model the model
     * @param config the method config
     * @param supported which module kinds the method can adapt
     * @param kinds a description of those kinds, for messages
     * @return the chosen module paths, in model order
     */
    public static List<String> select(TransformerModel model, TargetedConfig config, Predicate<Module> supported,
            String kinds) {
        ModuleSpec spec = config.targetModules();
        if (spec == null) {
            throw new PeftException(config.peftType() + " config: 'target_modules' is required (a list of module names, a regex, or \"all-linear\")");
        }
        Map<String, Module> all = candidates(model);
        List<String> out = new ArrayList<>();
        for (Map.Entry<String, Module> e : all.entrySet()) {
            String path = e.getKey();
            boolean named = spec.isAllLinear()
                    ? innermost(e.getValue()) instanceof Projection && !isHead(model, path)
                    : spec.matches(path);
            if (!named || excluded(config, path) || !inLayers(config, path)) {
                continue;
            }
            if (!supported.test(innermost(e.getValue()))) {
                throw new PeftException(config.peftType() + ": target module '" + path + "' is a "
                        + innermost(e.getValue()).getClass().getSimpleName() + "; supported are " + kinds);
            }
            out.add(path);
        }
        for (String entry : spec.nameList()) {
            if (all.keySet().stream().noneMatch(p -> ModuleSpec.matchesName(entry, p))) {
                throw new PeftException(config.peftType() + ": target_modules entry '" + entry + "' matches no module of "
                        + model.architecture() + "; module names there: " + leafNames(all));
            }
        }
        if (spec.isRegex() && !spec.isAllLinear() && all.keySet().stream().noneMatch(spec::matches)) {
            throw new PeftException(config.peftType() + ": target_modules regex '" + spec + "' matches no module path of "
                    + model.architecture() + " (it must match a whole path such as '" + all.keySet().stream()
                            .filter(p -> all.get(p) instanceof Projection).findFirst().orElse("") + "')");
        }
        if (out.isEmpty()) {
            throw new PeftException(config.peftType() + ": target_modules " + spec + " selects no module of "
                    + model.architecture() + " after exclude_modules / layers_to_transform");
        }
        return out;
    }

    /**
     * Paths named by {@code modules_to_save}-style entries (exact or dotted suffix); an entry matching
     * nothing is an error.
     *
     * @param model the model
     * @param entries the entries
     * @param key the config key, for messages
     * @return matched paths
     */
    public static List<String> byName(TransformerModel model, List<String> entries, String key) {
        Map<String, Module> all = candidates(model);
        List<String> out = new ArrayList<>();
        for (String entry : entries) {
            List<String> hit = all.keySet().stream().filter(p -> ModuleSpec.matchesName(entry, p)).toList();
            if (hit.isEmpty()) {
                throw new PeftException(key + " entry '" + entry + "' matches no module of " + model.architecture()
                        + "; module names there: " + leafNames(all));
            }
            hit.stream().filter(p -> !out.contains(p)).forEach(out::add);
        }
        return out;
    }

    /**
     * The module paths an adapter trains whole with this config: its {@code modules_to_save} entries and, for
     * sequence and token classification models, the classification head, as HF PEFT adds it. HF PEFT writes
     * both candidate head names {@code classifier} and {@code score} into {@code modules_to_save}; the one a
     * model lacks is skipped, as there. Any other entry matching no module is an error.
     *
     * @param model the model
     * @param config the adapter's config
     * @return the paths, without repeats (empty for none)
     */
    public static List<String> modulesToSave(TransformerModel model, PeftConfig config) {
        List<String> entries = new ArrayList<>();
        if (config.modulesToSave() != null) {
            entries.addAll(config.modulesToSave());
        }
        if (model.task() == TaskType.SEQ_CLS || model.task() == TaskType.TOKEN_CLS) {
            Set<String> paths = candidates(model).keySet();
            entries.removeIf(e -> HF_HEAD_NAMES.contains(e) && paths.stream().noneMatch(p -> ModuleSpec.matchesName(e, p)));
            model.outputHeadPaths().stream().filter(h -> !entries.contains(h)).forEach(entries::add);
        }
        return entries.isEmpty() ? List.of() : byName(model, entries, "modules_to_save");
    }

    /**
     * The module behind any wrappers at a path.
     *
     * @param m a module
     * @return the original module
     */
    public static Module innermost(Module m) {
        while (m instanceof AdapterLayer a) {
            m = a.baseModule();
        }
        return m;
    }

    private static boolean isHead(TransformerModel model, String path) {
        return model.outputHeadPaths().contains(path);
    }

    private static boolean excluded(TargetedConfig config, String path) {
        ModuleSpec ex = config.excludeModules();
        return ex != null && ex.matches(path);
    }

    private static boolean inLayers(TargetedConfig config, String path) {
        List<Integer> layers = config.layersToTransform();
        if (layers == null || layers.isEmpty()) {
            return true;
        }
        List<String> patterns = config.layersPattern();
        List<Pattern> ps = new ArrayList<>();
        if (patterns == null || patterns.isEmpty()) {
            ps.add(DEFAULT_LAYER);
        } else {
            for (String p : patterns) {
                ps.add(Pattern.compile(".*\\.(?:" + p + ")\\.(\\d+)\\..*"));
            }
        }
        for (Pattern p : ps) {
            Matcher m = p.matcher(path + ".");
            if (m.matches()) {
                return layers.contains(Integer.parseInt(m.group(1)));
            }
        }
        return false;
    }

    private static String leafNames(Map<String, Module> all) {
        TreeSet<String> s = new TreeSet<>();
        all.forEach((p, m) -> {
            if (innermost(m) instanceof Projection || innermost(m) instanceof io.github.peft4j.nn.Embedding) {
                s.add(p.substring(p.lastIndexOf('.') + 1));
            }
        });
        return s.toString();
    }
}
