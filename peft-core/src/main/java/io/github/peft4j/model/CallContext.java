package io.github.peft4j.model;

import java.util.List;

/**
 * What one forward call needs besides tensors, carried by {@link ModelInput} and readable by every layer of the
 * model for the duration of the call. Immutable.
 *
 * @param rowAdapters the adapter each batch row runs with (HF PEFT's {@code adapter_names=}; {@link #BASE} runs the
 *     base model for that row), or null for the active adapters on every row
 */
public record CallContext(List<String> rowAdapters) {
    /** The row-adapter name that runs a row through the base model, as HF PEFT spells it. */
    public static final String BASE = "__base__";
    /** No per-call settings. */
    public static final CallContext NONE = new CallContext(null);

    /** Copies the list. */
    public CallContext {
        rowAdapters = rowAdapters == null ? null : List.copyOf(rowAdapters);
    }

    /**
     * @param names one adapter name per batch row ({@link #BASE} for none)
     * @return a context with those row adapters
     */
    public static CallContext rowAdapters(List<String> names) {
        return new CallContext(names);
    }
}
