/**
 * Text generation. A {@link io.github.peft4j.generate.LanguageModel} (vocabulary size, special ids) opens
 * {@link io.github.peft4j.generate.DecodeSession}s (start with prompts, next with one token per row, close), each
 * owning its key/value cache, mask and positions; {@link io.github.peft4j.generate.TransformerLm} implements them
 * over a local model, with or without adapters. {@link io.github.peft4j.generate.Generator} drives a session,
 * greedily or by sampling, with a {@link io.github.peft4j.generate.LogitsProcessor} chain (repetition penalty,
 * temperature, top-k, top-p, and custom processors such as proxy-tuning) configured by
 * {@link io.github.peft4j.generate.GenerationConfig}.
 */
package io.github.peft4j.generate;
