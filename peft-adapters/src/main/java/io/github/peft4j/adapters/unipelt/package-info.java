/**
 * Union adapters ({@code peft_type: UNION}): AdapterHub's {@code ConfigUnion}, {@code UniPELTConfig} and
 * {@code MAMConfig} — bottleneck adapters, AdapterHub's prefix tuning and AdapterHub's LoRA under one adapter name,
 * each optionally gated ({@link io.github.peft4j.adapters.unipelt.Gate}), with AdapterHub's files both ways
 * (through {@link io.github.peft4j.adapters.bottleneck.AdapterHubFormat}).
 */
package io.github.peft4j.adapters.unipelt;
