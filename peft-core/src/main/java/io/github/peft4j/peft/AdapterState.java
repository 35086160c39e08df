package io.github.peft4j.peft;

import ai.djl.ndarray.NDManager;
import io.github.peft4j.model.CallContext;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** Which adapters are active, shared by a {@link PeftModel} and every layer its methods installed. */
public final class AdapterState {
    private final Set<String> active = new LinkedHashSet<>();
    private boolean disabled;
    /** The context of the forward call running on this thread, and its row groups once built. */
    private final ThreadLocal<Call> call = new ThreadLocal<>();

    private static final class Call {
        final CallContext context;
        final ai.djl.ndarray.NDArray attentionMask;
        RowGroups groups;

        Call(CallContext context, ai.djl.ndarray.NDArray attentionMask) {
            this.context = context;
            this.attentionMask = attentionMask;
        }
    }

    /**
     * A state with the given adapters active: for using a method's layers outside a {@link PeftModel}
     * (tests, custom wiring). A PeftModel owns and updates its own state.
     *
     * @param names adapter names
     * @return the state
     */
    public static AdapterState of(String... names) {
        AdapterState s = new AdapterState();
        s.setActive(List.of(names));
        return s;
    }

    /**
     * @param name an adapter name
     * @return whether that adapter takes part in the forward pass now
     */
    public boolean isActive(String name) {
        return !disabled && active.contains(name);
    }

    /** @return the active adapter names (ignoring a disabled scope) */
    public Set<String> active() {
        return Collections.unmodifiableSet(active);
    }

    /** @return true inside a disabled scope */
    public boolean isDisabled() {
        return disabled;
    }

    /**
     * The row groups of the forward call running on this thread, when it is a mixed-adapter batch: what layers
     * read to run each row with its own adapter. Null outside such a call (every row uses the active adapters).
     *
     * @param manager where to create the row index arrays (the layer's)
     * @return the groups, or null
     */
    public RowGroups rowGroups(NDManager manager) {
        Call c = call.get();
        if (c == null || c.context.rowAdapters() == null || disabled) {
            return null;
        }
        if (c.groups == null) {
            c.groups = new RowGroups(c.context.rowAdapters(), manager);
        }
        return c.groups;
    }

    /** @return the attention mask {@code [B, past + S]} of the forward call running on this thread, or null */
    public ai.djl.ndarray.NDArray attentionMask() {
        Call c = call.get();
        return c == null ? null : c.attentionMask;
    }

    /** @return the context of the forward call running on this thread ({@link CallContext#NONE} outside one) */
    public CallContext context() {
        Call c = call.get();
        return c == null ? CallContext.NONE : c.context;
    }

    /**
     * Makes a context current on this thread for one forward call; close the returned scope when the call ends.
     * Calls nest (the inner context wins until it closes).
     *
     * @param context the call's context
     * @return the scope
     */
    public CallScope enter(CallContext context) {
        return enter(context, null);
    }

    /**
     * As {@link #enter(CallContext)}, also making the call's attention mask readable by layers (gates that average
     * over the attended positions only).
     *
     * @param context the call's context
     * @param attentionMask the call's {@code [B, past + S]} key mask (1 = attend), or null
     * @return the scope
     */
    public CallScope enter(CallContext context, ai.djl.ndarray.NDArray attentionMask) {
        Call previous = call.get();
        call.set(new Call(context, attentionMask));
        return () -> {
            if (previous == null) {
                call.remove();
            } else {
                call.set(previous);
            }
        };
    }

    /**
     * @param name an adapter name
     * @param rowName the adapter of a row group
     * @return whether {@code name}'s term applies to that group's rows: it is the group's adapter and not disabled
     */
    public boolean appliesTo(String name, String rowName) {
        return !disabled && name.equals(rowName);
    }

    /** The scope of one forward call's context; closing it restores the previous context. */
    public interface CallScope extends AutoCloseable {
        @Override
        void close();
    }

    void setActive(List<String> names) {
        active.clear();
        active.addAll(names);
    }

    void remove(String name) {
        active.remove(name);
    }

    void setDisabled(boolean on) {
        disabled = on;
    }
}
