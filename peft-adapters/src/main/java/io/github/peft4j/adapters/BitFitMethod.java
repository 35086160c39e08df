package io.github.peft4j.adapters;

import io.github.peft4j.adapters.select.InPlaceAdapter;
import io.github.peft4j.adapters.select.Selection;
import io.github.peft4j.nn.Module;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;

/**
 * The BitFit method ({@code peft_type: BITFIT}): selects the {@code bias} parameters of existing modules
 * ({@link Selection#modules}: every module with a bias when {@code target_modules} is absent) and trains them in
 * place as an {@link InPlaceAdapter} (file keys {@code base_model.model.<module path>.bias}). A bias can belong to
 * one in-place adapter at a time.
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
        var paths = Selection.modules(context.model(), c, m -> bias(m) != null, KINDS);
        return new InPlaceAdapter(context, name, c, Selection.parameters(context.model(), paths, (m, k) -> k.equals("bias")),
                k -> k);
    }

    private static Object bias(Module m) {
        return m.localParameters().get("bias");
    }
}
