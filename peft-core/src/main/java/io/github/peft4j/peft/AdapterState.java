package io.github.peft4j.peft;

import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** Which adapters are active, shared by a {@link PeftModel} and every layer its methods installed. */
public final class AdapterState {
    private final Set<String> active = new LinkedHashSet<>();
    private boolean disabled;

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
