/**
 * Text generation: {@link io.github.peft4j.generate.Generator} decodes greedily or by sampling over the key/value
 * cache, with a {@link io.github.peft4j.generate.LogitsProcessor} chain (repetition penalty, temperature, top-k,
 * top-p, and custom processors such as proxy-tuning) configured by {@link io.github.peft4j.generate.GenerationConfig}.
 */
package io.github.peft4j.generate;
