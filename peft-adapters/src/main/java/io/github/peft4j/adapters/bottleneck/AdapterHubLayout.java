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
final class AdapterHubLayout {
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
    static AdapterHubLayout of(TransformerModel model) {
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
}
