package io.github.peft4j.prompt;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;

/** Registers prefix tuning ({@code PREFIX_TUNING}) with the method SPI. */
public final class PrefixTuningMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public PrefixTuningMethod() {}

    @Override
    public String peftType() {
        return PrefixTuningConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return PrefixTuningConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        if (!(config instanceof PrefixTuningConfig c)) {
            throw new PeftException("adapter '" + name + "': expected a PrefixTuningConfig, got " + config.getClass().getName());
        }
        c.fitTo(context.model(), context.source());
        return PrefixTuningAdapter.create(name, c, context.model());
    }
}
