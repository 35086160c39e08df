package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.List;
import java.util.Map;

/**
 * Parameter selection by module-name pattern ({@code peft_type: SELECTIVE}, see {@link SelectiveConfig}), trained in
 * place as an {@link InPlaceAdapter}.
 */
public final class SelectiveMethod implements PeftMethod {
    static final String KINDS = "modules with parameters of their own (linear, Conv1D, norm, embedding)";

    /** Used by {@link java.util.ServiceLoader}. */
    public SelectiveMethod() {}

    @Override
    public String peftType() {
        return SelectiveConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return SelectiveConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        SelectiveConfig c = (SelectiveConfig) config;
        return new InPlaceAdapter(context, name, c, select(context.model(), c), k -> k);
    }

    /**
     * The parameters a config selects.
     *
     * @param model the model
     * @param c the config (its {@code layers_to_transform} already resolved)
     * @return key to parameter (not empty)
     */
    static Map<String, Param> select(TransformerModel model, SelectiveConfig c) {
        // a pattern may also match containers or dropouts: they simply contribute no parameter of their own
        List<String> paths = Selection.modules(model, c, m -> true, KINDS);
        List<String> names = c.parameterNames();
        Map<String, Param> params = Selection.parameters(model, paths, (m, k) -> names == null || names.contains(k));
        if (names != null) {
            for (String n : names) {
                if (params.keySet().stream().noneMatch(k -> k.endsWith("." + n))) {
                    throw new PeftException(c.peftType() + ": parameter_names entry '" + n + "' names no parameter of the "
                            + paths.size() + " selected modules (e.g. '" + paths.get(0) + "' has "
                            + model.resolve(paths.get(0)).parameters().keySet() + ")");
                }
            }
        }
        if (params.isEmpty()) {
            throw new PeftException(c.peftType() + ": target_modules " + c.targetModules() + " selects modules without parameters"
                    + " of their own (e.g. '" + paths.get(0) + "'); expected " + KINDS);
        }
        return params;
    }
}
