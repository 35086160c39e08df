package io.github.peft4j.peft;

/**
 * The one SPI every method implements, registered in
 * {@code META-INF/services/io.github.peft4j.peft.PeftMethod} and discovered with {@link java.util.ServiceLoader}.
 * A method is a config class plus the {@link Adapter} it attaches; the adapter may wrap projection slots
 * ({@link LayerAdapter}), add virtual tokens or a key/value prefix ({@link PromptAdapter}), or select
 * existing parameters. The core has no special case for any method.
 */
public interface PeftMethod {
    /** @return HF's {@code peft_type} value, e.g. {@code LORA} */
    String peftType();

    /** @return the config class, deserialised from {@code adapter_config.json} by Jackson */
    Class<? extends PeftConfig> configType();

    /**
     * Attaches a new adapter to the model in the context. Its parameters are initialised as the method
     * prescribes; {@link PeftModel} decides whether they are trainable.
     *
     * @param context the model and shared adapter state
     * @param name the adapter name
     * @param config the config (already validated)
     * @return the attached adapter
     */
    Adapter attach(AdapterContext context, String name, PeftConfig config);
}
