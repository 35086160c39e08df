package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Conv1D;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.LayerNorm;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;

/**
 * HF PEFT's {@code ModulesToSaveWrapper}: keeps the original module as {@code original_module} and a trainable
 * copy per adapter as {@code modules_to_save.<adapter>}; the forward pass uses the copy of the first active
 * adapter that has one, else the original. Saved under the plain module name. Copies of fp16 modules are fp32
 * (trainable leaves cast to the compute dtype in forward: the output keeps the original's dtype).
 */
public final class ModulesToSaveLayer extends AdapterLayer {
    private static final String COPIES = "modules_to_save.";
    private final Set<String> names = new LinkedHashSet<>();
    private final DataType dtype;

    /**
     * @param original the module to copy
     * @param state the shared state
     */
    public ModulesToSaveLayer(Module original, AdapterState state) {
        super("original_module", original, state);
        // the compute dtype of the original's output (null for a module without parameters, which cannot be copied)
        this.dtype = original.parameters().values().stream().findFirst().map(p -> p.array().getDataType()).orElse(null);
    }

    /**
     * Adds a copy of the original for an adapter.
     *
     * @param adapter the adapter name
     * @param path the module path, for messages
     */
    public void addCopy(String adapter, String path) {
        if (!names.add(adapter)) {
            throw new PeftException("module '" + path + "' already has a modules_to_save copy for adapter '" + adapter + "'");
        }
        add(COPIES + adapter, copyOf(baseModule(), path));
    }

    /**
     * A deep copy of a module made of parameters only (linear, Conv1D, embedding, layer norm).
     *
     * @param m the module
     * @param path its path, for messages
     * @return the copy, with arrays in the original's manager
     */
    static Module copyOf(Module m, String path) {
        if (m instanceof Linear l) {
            return new Linear(dup(l.weight()), l.bias() == null ? null : dup(l.bias()));
        }
        if (m instanceof Conv1D c) {
            return new Conv1D(dup(c.weight()), dup(c.bias()));
        }
        if (m instanceof Embedding e) {
            return new Embedding(dup(e.weight()));
        }
        if (m instanceof LayerNorm n) {
            Map<String, Param> p = n.localParameters();
            return new LayerNorm(dup(p.get("weight")), dup(p.get("bias")), n.eps());
        }
        throw new PeftException("modules_to_save: module '" + path + "' is a " + m.getClass().getSimpleName()
                + "; supported are linear, Conv1D, embedding and layer-norm modules");
    }

    /** A copy in the original's manager; fp16 becomes an fp32 trainable leaf (cast in forward). */
    private static NDArray dup(Param p) {
        NDArray a = p.array();
        return io.github.peft4j.nn.Ops.ownedCopy(a, a.getManager(), a.getDataType() == DataType.FLOAT16 ? DataType.FLOAT32 : a.getDataType());
    }

    @Override
    public NDArray forward(NDArray x) {
        RowGroups groups = rowGroups(x);
        if (groups != null) { // each row through its adapter's copy, or the original
            return groups.map(x, (n, rows) -> (names.contains(n) ? layer(COPIES + n) : base()).forward(rows));
        }
        for (String n : names) {
            if (state.isActive(n)) {
                NDArray y = layer(COPIES + n).forward(x);
                return dtype == null ? y : Ops.cast(y, dtype); // an fp32 embedding copy of an fp16 model
            }
        }
        return base().forward(x);
    }

    @Override
    public Set<String> adapterNames() {
        return names;
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    @Override
    public String savedName(String local, String adapter) {
        return local.substring((COPIES + adapter + ".").length());
    }

    @Override
    public Map<String, Param> adapterParameters(String adapter) {
        Map<String, Param> out = new java.util.LinkedHashMap<>();
        if (names.contains(adapter)) {
            child(COPIES + adapter).parameters().forEach((k, v) -> out.put(COPIES + adapter + "." + k, v));
        }
        return out;
    }

    /**
     * @param adapter an adapter name
     * @return its copy
     */
    public Module copy(String adapter) {
        return child(COPIES + adapter);
    }

    @Override
    public void removeAdapter(String adapter) {
        if (names.remove(adapter)) {
            Module copy = removeChild(COPIES + adapter);
            copy.parameters().values().forEach(p -> p.array().close());
        }
    }
}
