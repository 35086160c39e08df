package io.github.peft4j.lora;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.lora.dora.DoraMagnitude;

/**
 * The merge rule of a LoRA layer for {@link MergeOrder}: {@code W + ΔW} for plain LoRA, {@code g ⊙ (W + ΔW)} for
 * DoRA, in the layout the weight is stored in. Linear and embedding layers differ only in where the weight, the
 * delta and the magnitude come from.
 */
abstract class LoraMergeRule implements MergeOrder.Weights {
    /**
     * @param adapter an adapter on the layer
     * @return its DoRA magnitude, or null for plain LoRA
     */
    abstract DoraMagnitude dora(String adapter);

    /**
     * @param adapter an adapter on the layer
     * @return its update in the stored layout
     */
    abstract NDArray deltaWeight(String adapter);

    /** @return whether the weight is stored {@code (in, out)} (Conv1D, embeddings seen as DoRA's {@code (out, in)}) */
    abstract boolean storedInOut();

    @Override
    public boolean rescales(String adapter) {
        return dora(adapter) != null;
    }

    @Override
    public NDArray merged(String adapter, NDArray clean) {
        DoraMagnitude d = dora(adapter);
        NDArray delta = deltaWeight(adapter);
        if (d == null) {
            return weight().add(delta);
        }
        boolean inOut = storedInOut();
        return d.merged(weight(), inOut ? clean.transpose() : clean, delta, inOut);
    }

    @Override
    public NDArray unmerged(String adapter) {
        DoraMagnitude d = dora(adapter);
        NDArray delta = deltaWeight(adapter);
        return d == null ? weight().sub(delta) : d.unmerged(weight(), delta, storedInOut());
    }
}
