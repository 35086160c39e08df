/**
 * Additive and selective methods: IA3 ({@link io.github.peft4j.adapters.IA3Config}), which rescales
 * projection activations with learned vectors, and BitFit ({@link io.github.peft4j.adapters.BitFitConfig}),
 * which trains the model's existing bias vectors in place.
 */
package io.github.peft4j.adapters;
