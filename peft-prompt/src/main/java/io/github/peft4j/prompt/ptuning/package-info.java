/**
 * P-tuning (Hugging Face PEFT's {@code PromptEncoderConfig}, {@code peft_type} {@code P_TUNING}): virtual-token
 * embeddings computed by a trainable MLP or bidirectional-LSTM encoder from a trainable table, prepended to the
 * input embeddings; saved as HF PEFT saves it (one tensor {@code prompt_embeddings}, the encoder's output).
 * Registered with {@link java.util.ServiceLoader} under {@code P_TUNING}.
 */
package io.github.peft4j.prompt.ptuning;
