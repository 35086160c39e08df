package io.github.peft4j.adapters.bottleneck;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;

/**
 * Where AdapterHub keeps a layer's bottleneck adapters, i.e. the module path before {@code .adapters.NAME.} in its
 * keys. AdapterHub puts them inside BERT's {@code attention.output} / {@code output} modules
 * ({@code bert.encoder.layer.0.output.adapters.NAME.adapter_down.0.weight}) and in a per-layer
 * {@code attention_adapters} / {@code output_adapters} module for GPT-2 and Llama
 * ({@code transformer.h.0.output_adapters.adapters.NAME...}, {@code model.layers.0.attention_adapters.adapters...}).
 * This is AdapterHub's file layout, so it is per architecture here; the computation itself only uses hook sites.
 */
public final class AdapterHubLayout {
    private final String prefix;
    private final String layers;
    private final String attention;
    private final String output;

    private AdapterHubLayout(String prefix, String layers, String attention, String output) {
        this.prefix = prefix;
        this.layers = layers;
        this.attention = attention;
        this.output = output;
    }

    /**
     * @param model the model
     * @return its AdapterHub layout
     */
    public static AdapterHubLayout of(TransformerModel model) {
        String type = model.config().modelType();
        String layers;
        String attention;
        String output;
        switch (type) {
            case "bert" -> {
                layers = "encoder.layer.";
                attention = "attention.output";
                output = "output";
            }
            case "gpt2" -> {
                layers = "h.";
                attention = "attention_adapters";
                output = "output_adapters";
            }
            case "llama", "mistral", "qwen2" -> {
                layers = "layers.";
                attention = "attention_adapters";
                output = "output_adapters";
            }
            default -> throw new PeftException("bottleneck adapters: model_type '" + type
                    + "' has no AdapterHub layout here (bert, gpt2, llama, mistral, qwen2)");
        }
        // the base-model prefix in front of the layers: "bert." for BertForSequenceClassification, "transformer." ...
        String first = layers + "0.";
        String prefix = null;
        for (String k : model.parameters().keySet()) {
            int at = k.startsWith(first) ? 0 : k.indexOf("." + first) + 1;
            if (at == 0 && !k.startsWith(first)) {
                continue;
            }
            prefix = k.substring(0, at);
            break;
        }
        if (prefix == null) {
            throw new PeftException("bottleneck adapters: no parameter of " + model.architecture() + " starts a layer path '"
                    + first + "'");
        }
        return new AdapterHubLayout(prefix, layers, attention, output);
    }

    /**
     * @param mh the adapter after the attention block (else after the feed-forward block)
     * @param layer the layer
     * @return the module path holding {@code adapters}, e.g. {@code bert.encoder.layer.0.output}
     */
    String holder(boolean mh, int layer) {
        return prefix + layers + layer + "." + (mh ? attention : output);
    }

    /** @return the base model's path with a trailing dot ({@code bert.}, {@code transformer.}, {@code model.}) */
    public String root() {
        return prefix;
    }

    /** @return the model's AdapterHub model type family: {@code bert}, {@code gpt2} or {@code llama} */
    public String family() {
        return switch (layers) {
            case "encoder.layer." -> "bert";
            case "h." -> "gpt2";
            default -> "llama";
        };
    }

    /**
     * @param layer a layer
     * @return the module holding AdapterHub's {@code prefix_tuning} layer of that layer's self-attention
     *     ({@code bert.encoder.layer.0.attention.self}, {@code transformer.h.0.attn}, {@code model.layers.0.self_attn})
     */
    public String attention(int layer) {
        return prefix + layers + layer + "." + switch (family()) {
            case "bert" -> "attention.self";
            case "gpt2" -> "attn";
            default -> "self_attn";
        };
    }

    /**
     * The modules AdapterHub wraps with LoRA in one layer, by its location: {@code selfattn} (one module per attention
     * matrix q, k, v; GPT-2's fused {@code c_attn} for all three), {@code intermediate}, {@code output}.
     *
     * @param layer the layer
     * @param location {@code selfattn}, {@code intermediate} or {@code output}
     * @param matrix {@code q}, {@code k} or {@code v} for {@code selfattn}, else null
     * @return the module path
     */
    public String loraTarget(int layer, String location, String matrix) {
        String l = prefix + layers + layer + ".";
        String family = family();
        return switch (location) {
            case "selfattn" -> switch (family) {
                case "bert" -> l + "attention.self." + switch (matrix) {
                    case "q" -> "query";
                    case "k" -> "key";
                    default -> "value";
                };
                case "gpt2" -> l + "attn.c_attn";
                default -> l + "self_attn." + matrix + "_proj";
            };
            // AdapterHub's own assignment (models/llama/mixin_llama.py): down_proj is "intermediate", up_proj "output"
            case "intermediate" -> l + switch (family) {
                case "bert" -> "intermediate.dense";
                case "gpt2" -> "mlp.c_fc";
                default -> "mlp.down_proj";
            };
            default -> l + switch (family) {
                case "bert" -> "output.dense";
                case "gpt2" -> "mlp.c_proj";
                default -> "mlp.up_proj";
            };
        };
    }
}
