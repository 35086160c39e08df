package io.github.peft4j.nn;

import io.github.peft4j.PeftException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A node of a model tree whose parameters and children carry their exact Hugging Face names. Full names
 * join the path with dots ({@code model.layers.0.self_attn.q_proj.weight}). A model's forward pass reads its
 * children by name on every call, so a method can {@link #replace} a child (a slot) with a wrapper that keeps
 * the original as its {@code base_layer}.
 */
public abstract class Module {
    private final Map<String, Param> params = new LinkedHashMap<>();
    private final Map<String, Module> children = new LinkedHashMap<>();
    private boolean training;

    /**
     * Registers a parameter under a local name (which may itself contain dots, e.g. {@code lora_A.default.weight}).
     *
     * @param name the local name
     * @param param the parameter
     * @return the parameter
     */
    protected Param register(String name, Param param) {
        if (params.putIfAbsent(name, param) != null) {
            throw new IllegalStateException("parameter '" + name + "' registered twice in " + getClass().getSimpleName());
        }
        return param;
    }

    /**
     * Removes a parameter registered under a local name.
     *
     * @param name the local name
     * @return the removed parameter, or null
     */
    protected Param unregister(String name) {
        return params.remove(name);
    }

    /**
     * Adds a child module.
     *
     * @param name the child's name (one path segment, or a dotted path for nested containers)
     * @param child the child
     * @param <T> the child type
     * @return the child
     */
    protected <T extends Module> T add(String name, T child) {
        if (children.putIfAbsent(name, child) != null) {
            throw new IllegalStateException("child '" + name + "' added twice in " + getClass().getSimpleName());
        }
        child.train(training);
        return child;
    }

    /**
     * Returns a direct child.
     *
     * @param name the child's name
     * @return the child
     */
    public Module child(String name) {
        Module m = children.get(name);
        if (m == null) {
            throw new PeftException(getClass().getSimpleName() + " has no child '" + name + "'; it has " + children.keySet());
        }
        return m;
    }

    /**
     * Returns the {@link Layer} currently at a module path below this module: how forward passes read their
     * replaceable slots, so that a wrapper put there by a method takes effect.
     *
     * @param path a child name or a dotted path ({@code attn.c_attn})
     * @return the layer currently in that slot
     */
    public Layer layer(String path) {
        Module m = path.indexOf('.') < 0 ? child(path) : resolve(path);
        if (!(m instanceof Layer)) {
            throw new PeftException("module '" + path + "' is a " + m.getClass().getSimpleName() + ", not a layer");
        }
        return (Layer) m;
    }

    /**
     * Replaces a direct child, keeping its name.
     *
     * @param name the child's name
     * @param replacement the new child
     * @return the child that was there
     */
    public Module replace(String name, Module replacement) {
        Module old = child(name);
        replacement.train(training);
        children.put(name, replacement);
        return old;
    }

    /**
     * Removes a direct child.
     *
     * @param name the child's name
     * @return the removed child
     */
    protected Module removeChild(String name) {
        Module m = children.remove(name);
        if (m == null) {
            throw new PeftException(getClass().getSimpleName() + " has no child '" + name + "'");
        }
        return m;
    }

    /**
     * Resolves a dotted module path below this module ({@code model.layers.0.self_attn}).
     *
     * @param path the path; empty for this module
     * @return the module
     */
    public Module resolve(String path) {
        if (path.isEmpty()) {
            return this;
        }
        Module m = this;
        String rest = path;
        outer:
        while (!rest.isEmpty()) {
            // children may have dotted names (e.g. "lora_A.default"): try the longest matching prefix first
            for (String c : m.children.keySet()) {
                if (rest.equals(c) || rest.startsWith(c + ".")) {
                    m = m.children.get(c);
                    rest = rest.length() == c.length() ? "" : rest.substring(c.length() + 1);
                    continue outer;
                }
            }
            throw new PeftException("no module '" + path + "' in " + getClass().getSimpleName());
        }
        return m;
    }

    /** @return the direct children in order */
    public Map<String, Module> children() {
        return Collections.unmodifiableMap(children);
    }

    /** @return the parameters registered directly on this module */
    public Map<String, Param> localParameters() {
        return Collections.unmodifiableMap(params);
    }

    /** @return every parameter below this module, by full dotted name, in registration order */
    public Map<String, Param> parameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        collectParams("", out);
        return out;
    }

    private void collectParams(String prefix, Map<String, Param> out) {
        params.forEach((k, v) -> out.put(prefix + k, v));
        children.forEach((k, v) -> v.collectParams(prefix + k + ".", out));
    }

    /** @return every module below this one (not this one), by full dotted path, parents before children */
    public Map<String, Module> modules() {
        Map<String, Module> out = new LinkedHashMap<>();
        collectModules("", out);
        return out;
    }

    private void collectModules(String prefix, Map<String, Module> out) {
        children.forEach((k, v) -> {
            out.put(prefix + k, v);
            v.collectModules(prefix + k + ".", out);
        });
    }

    /**
     * Sets training mode (dropout active) on this module and all children.
     *
     * @param on true for training
     */
    public void train(boolean on) {
        training = on;
        children.values().forEach(c -> c.train(on));
    }

    /** @return whether this module is in training mode */
    public boolean isTraining() {
        return training;
    }
}
