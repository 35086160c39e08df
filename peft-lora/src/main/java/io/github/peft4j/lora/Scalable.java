package io.github.peft4j.lora;

import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Module;
import io.github.peft4j.peft.PeftModel;
import java.util.List;

/**
 * A LoRA layer's per-adapter scale at inference, as HF PEFT 0.21's {@code LoraLayer} ({@code tuners/lora/layer.py}):
 * {@link #setScale} ({@code set_scale(adapter, scale)}: {@code scaling = scale · lora_alpha / r}, or
 * {@code / sqrt(r)} with rsLoRA), {@link #scaleLayer} ({@code scale_layer}: the active adapters' current scaling times
 * a factor) and {@link #unscaleLayer} ({@code unscale_layer}: divided by it, or back to {@code lora_alpha / r}). The
 * scale acts on the forward pass (DoRA's weight norm included) and on merging. Unlike HF, a merged adapter's scale
 * cannot change: HF changes it, so the merged weight keeps the old scale and a later unmerge subtracts the new one.
 * Implemented by {@link LoraLayer} and {@link LoraEmbeddingLayer}; AdaLoRA's layers have no such scale here.
 *
 * <pre>{@code
 * ((LoraAdapter) peft.adapter("style")).setScale(0.5);   // every layer of one adapter
 * Scalable.scaleActive(peft, 2.0);                        // scale_layer(2.0) on every LoRA layer
 * Scalable.unscaleActive(peft, null);                     // unscale_layer(None)
 * }</pre>
 */
public interface Scalable {
    /**
     * @param adapter an adapter on this layer
     * @return its scaling now
     */
    double scaling(String adapter);

    /**
     * @param adapter an adapter on this layer
     * @return its scaling from the config ({@code lora_alpha / r} or {@code lora_alpha / sqrt(r)})
     */
    double initialScaling(String adapter);

    /**
     * Sets an adapter's scaling itself (what the other methods use).
     *
     * @param adapter an adapter on this layer
     * @param scaling the new value
     * @throws PeftException when the adapter is merged into the base weight
     */
    void setScaling(String adapter, double scaling);

    /** @return the adapters on this layer that are active now */
    List<String> activeHere();

    /** @return whether an adapter is on this layer */
    boolean has(String adapter);

    /**
     * HF's {@code set_scale}: {@code scaling = scale · initialScaling}; an adapter not on this layer is ignored.
     *
     * @param adapter the adapter
     * @param scale the factor on the config's scale
     */
    default void setScale(String adapter, double scale) {
        if (has(adapter)) {
            setScaling(adapter, scale * initialScaling(adapter));
        }
    }

    /**
     * HF's {@code scale_layer}: multiplies the current scaling of every active adapter on this layer (1: nothing).
     *
     * @param factor the factor
     */
    default void scaleLayer(double factor) {
        if (factor == 1) {
            return;
        }
        for (String a : activeHere()) {
            setScaling(a, scaling(a) * factor);
        }
    }

    /**
     * HF's {@code unscale_layer}: divides the current scaling of every active adapter on this layer by a factor,
     * or, with null, resets it to the config's.
     *
     * @param factor the divisor, or null
     */
    default void unscaleLayer(Double factor) {
        for (String a : activeHere()) {
            setScaling(a, factor == null ? initialScaling(a) : scaling(a) / factor);
        }
    }

    /** @return the message of a refused change */
    static String mergedError(String adapter) {
        return "LoRA adapter '" + adapter + "' is merged into the base weights: unmerge it before changing its scale"
                + " (the merged weight holds the old scale)";
    }

    /**
     * {@link #scaleLayer} on every LoRA layer of a model.
     *
     * @param peft the model
     * @param factor the factor
     * @return how many layers were scaled
     * @throws PeftException when the model has no LoRA layer (as HF's {@code rescale_adapter_scale})
     */
    static int scaleActive(PeftModel peft, double factor) {
        List<Scalable> layers = layers(peft);
        layers.forEach(l -> l.scaleLayer(factor));
        return layers.size();
    }

    /**
     * {@link #unscaleLayer} on every LoRA layer of a model.
     *
     * @param peft the model
     * @param factor the divisor, or null to reset every active adapter to its config's scale
     * @return how many layers were changed
     * @throws PeftException when the model has no LoRA layer
     */
    static int unscaleActive(PeftModel peft, Double factor) {
        List<Scalable> layers = layers(peft);
        layers.forEach(l -> l.unscaleLayer(factor));
        return layers.size();
    }

    private static List<Scalable> layers(PeftModel peft) {
        List<Scalable> out = new java.util.ArrayList<>();
        for (Module m : peft.model().modules().values()) {
            if (m instanceof Scalable s) {
                out.add(s);
            }
        }
        if (out.isEmpty()) {
            throw new PeftException("scaling is only supported for models with LoRA layers; this model has none");
        }
        return out;
    }
}
