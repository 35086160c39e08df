package io.github.peft4j.prompt;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;

/** Registers prompt tuning ({@code PROMPT_TUNING}) with the method SPI. */
public final class PromptTuningMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public PromptTuningMethod() {}

    @Override
    public String peftType() {
        return PromptTuningConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return PromptTuningConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        if (!(config instanceof PromptTuningConfig c)) {
            throw new PeftException("adapter '" + name + "': expected a PromptTuningConfig, got " + config.getClass().getName());
        }
        c.fitTo(context.model(), context.source());
        return PromptTuningAdapter.create(name, c, context.model());
    }
}
