package io.github.peft4j.peft;

import java.util.List;

/**
 * A capability of a {@link PeftMethod}: it builds a new adapter from weighted adapters of that method already
 * attached to a model, as HF PEFT's {@code LoraModel.add_weighted_adapter}. {@link PeftModel#addWeightedAdapter}
 * checks the names and weights, asks the method for the new adapter's config ({@link #combinedConfig}), attaches an
 * adapter with it, and lets the method fill its parameters ({@link #combineInto}); the core knows nothing of how.
 * The LORA method implements it ({@code io.github.peft4j.lora.combine}).
 */
public interface WeightedCombiner {
    /** How to combine: method-specific options (for LoRA {@code io.github.peft4j.lora.combine.Combination}). */
    interface Spec {
        /** @return the combination's name as the method's library spells it (HF's {@code combination_type}) */
        String type();
    }

    /**
     * The config of the combined adapter (a new value; the sources' configs are not changed).
     *
     * @param sources the source adapters, in the caller's order (at least one, all of this method)
     * @param spec how to combine
     * @return the config to attach the new adapter with
     */
    PeftConfig combinedConfig(List<Adapter> sources, Spec spec);

    /**
     * Writes the combined values into a freshly attached adapter made from {@link #combinedConfig}.
     *
     * @param target the new adapter
     * @param sources the source adapters, in the caller's order
     * @param weights one weight per source (any sign)
     * @param spec how to combine
     */
    void combineInto(Adapter target, List<Adapter> sources, double[] weights, Spec spec);
}
