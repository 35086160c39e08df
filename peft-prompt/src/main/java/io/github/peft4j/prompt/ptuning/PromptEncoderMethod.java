package io.github.peft4j.prompt.ptuning;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;

/** Registers P-tuning ({@code P_TUNING}) with the method SPI. */
public final class PromptEncoderMethod implements PeftMethod {
    /** Used by {@link java.util.ServiceLoader}. */
    public PromptEncoderMethod() {}

    @Override
    public String peftType() {
        return PromptEncoderConfig.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return PromptEncoderConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        if (!(config instanceof PromptEncoderConfig c)) {
            throw new PeftException("adapter '" + name + "': expected a PromptEncoderConfig, got " + config.getClass().getName());
        }
        c.fitTo(context.model(), context.source());
        return PromptEncoderAdapter.create(name, c, context.model());
    }
}
