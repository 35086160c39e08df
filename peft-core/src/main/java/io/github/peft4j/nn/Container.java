package io.github.peft4j.nn;

/** A module that only groups children, like {@code torch.nn.ModuleList} (children named 0, 1, ...) or a plain submodule. */
public class Container extends Module {
    /**
     * Adds a child.
     *
     * @param name the child's name
     * @param child the child
     * @param <T> its type
     * @return the child
     */
    public <T extends Module> T put(String name, T child) {
        return add(name, child);
    }
}
