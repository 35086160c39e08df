package io.github.peft4j.peft;

import java.util.List;

/** Test access to {@link AdapterState}'s package-private setter, for layer-level tests without a PeftModel. */
public final class TestStates {
    private TestStates() {}

    /**
     * @param names adapter names
     * @return a state with exactly these adapters active
     */
    public static AdapterState active(String... names) {
        AdapterState s = new AdapterState();
        s.setActive(List.of(names));
        return s;
    }
}
