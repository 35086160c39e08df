package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.Checkpoint;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Weights from a checkpoint: each requested name must exist with the requested shape. Tracks what was used so
 * that leftovers can be reported. A checkpoint of the bare encoder (no {@code bert.} prefix) loads into a
 * model with a head, as transformers allows: the base-model prefix is added or removed when one side lacks it.
 */
public final class CheckpointWeights implements WeightSource {
    private static final Logger LOG = LoggerFactory.getLogger(CheckpointWeights.class);
    private final Checkpoint checkpoint;
    private final String where;
    private final NDManager manager;
    private final DataType dtype;
    private final String basePrefix;
    private final RandomWeights fallback;
    private final Set<String> used = new HashSet<>();
    private final List<String> initialised = new ArrayList<>();
    private final List<String> fromHeads = new ArrayList<>();
    private HeadSource heads;

    /**
     * @param checkpoint the open checkpoint
     * @param where the directory, for messages
     * @param manager owns the arrays
     * @param dtype the compute dtype
     * @param basePrefix the base-model prefix of the architecture ({@code bert}, {@code transformer}, {@code model})
     * @param initStd std of heads initialised because the checkpoint lacks them
     */
    public CheckpointWeights(Checkpoint checkpoint, String where, NDManager manager, DataType dtype,
            String basePrefix, float initStd) {
        this.checkpoint = checkpoint;
        this.where = where;
        this.manager = manager;
        this.dtype = dtype;
        this.basePrefix = basePrefix;
        this.fallback = new RandomWeights(manager, dtype, initStd);
    }

    /**
     * Takes head tensors the checkpoint lacks from another source before initialising them.
     *
     * @param source the source (an adapter's saved head), or null
     * @return this
     */
    public CheckpointWeights optHeads(HeadSource source) {
        this.heads = source;
        return this;
    }

    private String locate(String name) {
        if (checkpoint.contains(name)) {
            return name;
        }
        String prefix = basePrefix + ".";
        if (name.startsWith(prefix) && checkpoint.contains(name.substring(prefix.length()))) {
            return name.substring(prefix.length());
        }
        if (checkpoint.contains(prefix + name)) {
            return prefix + name;
        }
        return null;
    }

    @Override
    public NDArray get(String name, Shape shape, Init init) {
        String key = locate(name);
        if (key == null) {
            throw new PeftException(where + ": checkpoint has no tensor '" + name + "' (expected shape " + shape + ")");
        }
        return load(key, shape);
    }

    private NDArray load(String key, Shape shape) {
        long[] found = checkpoint.info(key).shape();
        if (!Arrays.equals(found, shape.getShape())) {
            throw new PeftException(where + ": tensor '" + key + "' has shape " + Arrays.toString(found)
                    + ", the model's config needs " + shape);
        }
        used.add(key);
        return checkpoint.load(key, manager, dtype);
    }

    @Override
    public NDArray head(String name, Shape shape, Init init) {
        String key = locate(name);
        if (key == null) {
            long[] found = heads == null ? null : heads.shape(name);
            if (found != null) {
                if (!Arrays.equals(found, shape.getShape())) {
                    throw new PeftException(heads.describe(name) + " has shape " + Arrays.toString(found) + ", the model "
                            + where + " needs " + shape + " for '" + name + "'");
                }
                fromHeads.add(name);
                return heads.load(name, manager, dtype);
            }
            initialised.add(name);
            return fallback.get(name, shape, init);
        }
        return load(key, shape);
    }

    /** @return the head tensors taken from the {@link #optHeads head source}, in model order */
    public List<String> fromHeads() {
        return List.copyOf(fromHeads);
    }

    /**
     * The head tensors the checkpoint lacked and that were initialised instead (a sentence-transformers export
     * loaded with a classification head has no pooler and no classifier).
     *
     * @return their names, in model order
     */
    public List<String> initialised() {
        return List.copyOf(initialised);
    }

    /**
     * Logs one warning naming every initialised head tensor (as transformers warns once per load), if any.
     *
     * @param architecture the model's architecture, for the message
     */
    public void warnInitialised(String architecture) {
        if (!initialised.isEmpty()) {
            LOG.warn("{}: {} tensors of {} are not in the checkpoint and were newly initialised (train them before use): {}",
                    where, initialised.size(), architecture, initialised);
        }
    }

    /**
     * Checks that every checkpoint tensor was used, except names matching {@code ignore} (buffers such as
     * {@code attn.bias} or {@code rotary_emb.inv_freq} that transformers also skips).
     *
     * @param ignore pattern of names to skip
     */
    public void checkAllUsed(Pattern ignore) {
        Set<String> left = new TreeSet<>(checkpoint.names());
        left.removeAll(used);
        left.removeIf(n -> ignore.matcher(n).matches());
        if (!left.isEmpty()) {
            LOG.warn("{}: {} checkpoint tensors not used by the model: {}", where, left.size(), left);
        }
    }
}
