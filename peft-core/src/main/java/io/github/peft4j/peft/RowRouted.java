package io.github.peft4j.peft;

/**
 * A capability of an {@link Adapter} that can run each row of a mixed-adapter batch with its own adapter
 * ({@link io.github.peft4j.model.CallContext#rowAdapters}, HF PEFT's {@code adapter_names=}): every layer it
 * installed computes its term on its own rows only ({@link RowGroups}). An adapter without it is refused in such a
 * batch with a clear error.
 */
public interface RowRouted {}
