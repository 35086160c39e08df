/**
 * Prompt-learning methods: prompt tuning ({@link io.github.peft4j.prompt.PromptTuningConfig}), which prepends
 * trainable virtual-token embeddings to the input, and prefix tuning
 * ({@link io.github.peft4j.prompt.PrefixTuningConfig}), which prepends trainable keys and values in every
 * attention layer. Both save one tensor, {@code prompt_embeddings}, exactly as Hugging Face PEFT does, and are
 * registered with {@link java.util.ServiceLoader} under {@code PROMPT_TUNING} and {@code PREFIX_TUNING}.
 * P-tuning is in {@link io.github.peft4j.prompt.ptuning}, proxy-tuning (decode-time logit arithmetic) in
 * {@link io.github.peft4j.prompt.proxy}.
 */
package io.github.peft4j.prompt;
