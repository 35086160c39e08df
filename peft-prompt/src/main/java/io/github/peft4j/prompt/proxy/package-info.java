/**
 * Proxy-tuning (Liu et al., 2024): decode-time steering of a model M by a tuned small model M+ and its untuned
 * version M-, {@code s = s_M + alpha (s_M+ - s_M-)} per step ({@link io.github.peft4j.prompt.proxy.ProxyTuningLm}, a
 * {@link io.github.peft4j.generate.LanguageModel} that {@link io.github.peft4j.generate.Generator} decodes), and
 * {@link io.github.peft4j.prompt.proxy.PinnedAdapterLm}, which lets one {@link io.github.peft4j.peft.PeftModel} serve
 * as both M+ and M- through per-row adapters. See docs/proxy-tuning.md.
 */
package io.github.peft4j.prompt.proxy;
