/**
 * 4-bit weights as bitsandbytes stores them, for QLoRA: {@link io.github.peft4j.nn.quant.FourBitQuantizer} quantises
 * and dequantises NF4 / FP4 blockwise with optional double quantisation, bit for bit as bitsandbytes' CPU code
 * (checked against fixtures made by bitsandbytes itself); {@link io.github.peft4j.nn.quant.Linear4bit} is a
 * {@link io.github.peft4j.nn.Projection} over such a weight, kept packed and dequantised inside forward, that LoRA,
 * DoRA and IA3 wrap like any projection (LoRA and DoRA merge into it by dequantising and requantising,
 * {@link io.github.peft4j.nn.quant.Linear4bit#requantize}). The model loader builds these layers for bnb-4bit checkpoints
 * and for {@link io.github.peft4j.model.Quantization quantise-on-load}; they live here in peft-core rather than in
 * peft-lora because the loader needs them.
 */
package io.github.peft4j.nn.quant;
