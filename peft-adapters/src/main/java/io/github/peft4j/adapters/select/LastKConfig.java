package io.github.peft4j.adapters.select;

import io.github.peft4j.PeftException;

/**
 * Config of last-k-layers tuning ({@code peft_type: LAST_K}, peft4j's own): train in place every parameter of the
 * last {@code last_k} transformer layers (the reference notes' "only the last quarter of the layers"), as
 * {@link SelectiveConfig} with {@code layers_to_transform} set to those layers. {@code last_k} absent means a quarter
 * of the layers, rounded up ({@code ceil(L / 4)}: 2 of MiniLM's 6). {@code target_modules} (absent: every module with
 * parameters inside those layers) and {@code parameter_names} narrow it further; {@code layers_to_transform} must
 * not be given. Saved keys are {@code base_model.model.<module path>.<parameter>}, as SELECTIVE's.
 */
public class LastKConfig extends SelectiveConfig {
    /** The {@code peft_type} value. */
    public static final String PEFT_TYPE = "LAST_K";
    /** How many of the last layers to train, or null for a quarter (rounded up). */
    protected Integer lastK;

    /** A config training the last quarter of the layers. */
    public LastKConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code last_k}, or null for a quarter of the layers */
    public Integer lastK() {
        return lastK;
    }

    /**
     * @param k how many of the last layers to train (at least 1), or null for a quarter
     * @return this
     */
    public LastKConfig lastK(Integer k) {
        this.lastK = k;
        return this;
    }

    /**
     * @param layers the model's number of layers
     * @return the number of layers trained
     */
    public int resolvedK(int layers) {
        return lastK != null ? lastK : Math.max(1, (layers + 3) / 4);
    }

    @Override
    public void validate(String where) {
        super.validate(where);
        if (lastK != null && lastK < 1) {
            throw new PeftException(where + ": last_k must be >= 1 (or absent for a quarter of the layers), got " + lastK);
        }
        if (layersToTransform != null) {
            throw new PeftException(where + ": LAST_K chooses the layers from last_k; do not give layers_to_transform "
                    + layersToTransform + " (use SELECTIVE for an explicit layer list)");
        }
    }
}
