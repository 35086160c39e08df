package io.github.peft4j.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The weights of a Hugging Face model directory: either a single {@code model.safetensors} or shards listed
 * in {@code model.safetensors.index.json} (the index wins if both exist).
 *
 * <p>{@link #open(Path)} opens every shard once and checks that each tensor the index names is really in its
 * shard, so a broken checkpoint fails at open time rather than halfway through loading. For a sharded
 * checkpoint the index's {@code weight_map} is authoritative: tensors in a shard but not in the map are
 * ignored.
 */
public final class Checkpoint implements AutoCloseable {
    private final Path dir;
    /** Tensor name to the open file holding it, sorted by name. */
    private final Map<String, SafeTensorsFile> byName;
    private final Map<String, SafeTensorsFile> files;

    private Checkpoint(Path dir, Map<String, SafeTensorsFile> byName, Map<String, SafeTensorsFile> files) {
        this.dir = dir;
        this.byName = Collections.unmodifiableMap(byName);
        this.files = files;
    }

    /**
     * Opens the weights of a model directory.
     *
     * @param dir the directory holding {@code model.safetensors} or {@code model.safetensors.index.json}
     * @return the checkpoint; close it when done
     * @throws PeftException if neither file exists, the index is malformed, a shard is missing, a shard is
     *     not valid safetensors, or a tensor named by the index is not in its shard
     * @throws UncheckedIOException if a file cannot be read
     */
    public static Checkpoint open(Path dir) {
        Path index = dir.resolve(SafeTensorsWriter.INDEX_FILE);
        Path single = dir.resolve(SafeTensorsWriter.SINGLE_FILE);
        if (Files.isRegularFile(index)) {
            return openSharded(dir, index);
        }
        if (Files.isRegularFile(single)) {
            SafeTensorsFile file = SafeTensorsFile.open(single);
            Map<String, SafeTensorsFile> byName = new TreeMap<>();
            file.names().forEach(name -> byName.put(name, file));
            return new Checkpoint(dir, byName, Map.of(SafeTensorsWriter.SINGLE_FILE, file));
        }
        throw new PeftException(dir + ": no " + SafeTensorsWriter.SINGLE_FILE + " or " + SafeTensorsWriter.INDEX_FILE);
    }

    private static Checkpoint openSharded(Path dir, Path index) {
        Map<String, String> weightMap = readWeightMap(index);
        Path base = dir.toAbsolutePath().normalize();
        Map<String, SafeTensorsFile> files = new LinkedHashMap<>();
        try {
            Map<String, SafeTensorsFile> byName = new TreeMap<>();
            for (Map.Entry<String, String> e : weightMap.entrySet()) {
                String tensor = e.getKey();
                String shard = e.getValue();
                SafeTensorsFile file = files.get(shard);
                if (file == null) {
                    Path path = base.resolve(shard).normalize();
                    if (!base.equals(path.getParent())) {
                        throw new PeftException(index + ": shard '" + shard + "' of tensor '" + tensor
                                + "' must be a file name in " + dir);
                    }
                    if (!Files.isRegularFile(path)) {
                        throw new PeftException(index + ": shard '" + shard + "' (listed for tensor '" + tensor
                                + "') does not exist in " + dir);
                    }
                    file = SafeTensorsFile.open(path);
                    files.put(shard, file);
                }
                if (!file.contains(tensor)) {
                    throw new PeftException(index + ": tensor '" + tensor + "' is mapped to shard '" + shard
                            + "' but " + file.path() + " has no such tensor");
                }
                byName.put(tensor, file);
            }
            return new Checkpoint(dir, byName, files);
        } catch (RuntimeException e) {
            files.values().forEach(SafeTensorsFile::close);
            throw e;
        }
    }

    private static Map<String, String> readWeightMap(Path index) {
        JsonNode root;
        try {
            root = SafeTensorsFile.JSON.readTree(SizeLimits.check(index, SizeLimits.INDEX_JSON).toFile());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new PeftException(index + ": not valid JSON: " + e.getOriginalMessage(), e);
        } catch (java.io.CharConversionException e) { // bytes that are no Unicode text (found by fuzzing)
            throw new PeftException(index + ": not valid JSON text: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + index + ": " + e.getMessage(), e);
        }
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject()) {
            throw new PeftException(index + ": expected an object 'weight_map' of tensor name to shard file");
        }
        Map<String, String> out = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = map.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new PeftException(index + ": weight_map entry for tensor '" + e.getKey()
                        + "' must be a shard file name, found " + e.getValue());
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
        return out;
    }

    /**
     * Returns the directory this checkpoint was opened from.
     *
     * @return the model directory
     */
    public Path directory() {
        return dir;
    }

    /**
     * Returns all tensor names.
     *
     * @return an unmodifiable set in sorted order
     */
    public Set<String> names() {
        return byName.keySet();
    }

    /**
     * Returns whether the checkpoint has a tensor of this name.
     *
     * @param name the tensor name
     * @return true if present
     */
    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    /**
     * Returns the header entry of a tensor (offsets are relative to its shard's data section).
     *
     * @param name the tensor name
     * @return its dtype, shape and offsets
     * @throws PeftException if there is no such tensor
     */
    public TensorInfo info(String name) {
        return fileOf(name).info(name);
    }

    /**
     * Loads a tensor as {@link SafeTensorsFile#load(String, NDManager, DataType)} does: floating-point
     * tensors are converted to {@code target} (FLOAT32, FLOAT16 or FLOAT64; null keeps the in-memory type),
     * integer and boolean tensors keep their type.
     *
     * @param name the tensor name
     * @param manager the manager that will own the array
     * @param target the floating-point type wanted, or null
     * @return a libtorch-owned array
     * @throws PeftException if there is no such tensor or the target is not allowed
     */
    public NDArray load(String name, NDManager manager, DataType target) {
        return fileOf(name).load(name, manager, target);
    }

    private SafeTensorsFile fileOf(String name) {
        SafeTensorsFile file = byName.get(name);
        if (file == null) {
            throw new PeftException(dir + ": no tensor '" + name + "' in the checkpoint (" + byName.size()
                    + " tensors)");
        }
        return file;
    }

    /** Closes every shard file. Arrays already loaded stay valid. */
    @Override
    public void close() {
        RuntimeException first = null;
        for (SafeTensorsFile file : files.values()) {
            try {
                file.close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
