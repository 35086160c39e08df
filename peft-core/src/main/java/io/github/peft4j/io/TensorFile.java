package io.github.peft4j.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A weights file opened for reading tensor by tensor: {@link SafeTensorsFile} or a torch.save {@link TorchBinFile}.
 * What both offer is here once; each says how it reads one tensor.
 *
 * @param <I> the file's description of a tensor
 */
public abstract class TensorFile<I extends TensorEntry> implements AutoCloseable {
    /** The file, for messages. */
    protected final Path file;
    /** Every tensor, in file order. */
    protected final Map<String, I> tensors;

    /**
     * @param file the file
     * @param tensors its tensors, in file order
     */
    protected TensorFile(Path file, Map<String, I> tensors) {
        this.file = file;
        this.tensors = tensors;
    }

    /**
     * Opens a weights file by its name: {@code *.safetensors}, or a torch.save {@code *.bin}, {@code *.pt} or
     * {@code *.pth} (read without running pickled code).
     *
     * @param file the file
     * @return the open file
     * @throws PeftException if the name has another extension or the file is invalid
     */
    public static TensorFile<?> open(Path file) {
        String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
        if (name.endsWith(".safetensors")) {
            return SafeTensorsFile.open(file);
        }
        if (name.endsWith(".bin") || name.endsWith(".pt") || name.endsWith(".pth")) {
            return TorchBinFile.open(file);
        }
        throw new PeftException(file + ": unknown weights file type, expected *.safetensors or a torch.save "
                + "*.bin, *.pt or *.pth");
    }

    /** @return the path this file was opened from */
    public Path path() {
        return file;
    }

    /** @return the tensor names in file order (unmodifiable) */
    public List<String> names() {
        return List.copyOf(tensors.keySet());
    }

    /**
     * @param name a tensor name
     * @return whether the file has it
     */
    public boolean contains(String name) {
        return tensors.containsKey(name);
    }

    /**
     * @param name a tensor name
     * @return its description
     * @throws PeftException if there is no such tensor
     */
    public I info(String name) {
        I info = tensors.get(name);
        if (info == null) {
            throw new PeftException(file + ": no tensor '" + name + "' (file has " + tensors.size() + " tensors)");
        }
        return info;
    }

    /**
     * Loads a tensor into a new libtorch-owned array in its in-memory type ({@link TensorDType#memoryType()}: BF16
     * becomes FLOAT32, I16 becomes INT32, both exact).
     *
     * @param name the tensor name
     * @param manager the manager that will own the array
     * @return the array; the caller (or the manager) closes it
     * @throws PeftException if there is no such tensor or its data is invalid
     * @throws java.io.UncheckedIOException if reading fails
     */
    public NDArray load(String name, NDManager manager) {
        return load(name, manager, null, defaultChunkBytes());
    }

    /**
     * Loads a tensor and, if it is floating-point, converts it to {@code target} (FLOAT32, FLOAT16 or FLOAT64);
     * integer and boolean tensors keep their natural type. A {@code null} target keeps the in-memory type.
     *
     * @param name the tensor name
     * @param manager the manager that will own the array
     * @param target the floating-point type wanted, or null
     * @return the array; the caller (or the manager) closes it
     * @throws PeftException if there is no such tensor or the target is not FLOAT32, FLOAT16 or FLOAT64
     */
    public NDArray load(String name, NDManager manager, DataType target) {
        return load(name, manager, target, defaultChunkBytes());
    }

    /**
     * Loads every tensor, as {@link #load(String, NDManager, DataType)} does; on a failure the arrays loaded so far
     * are closed.
     *
     * @param manager the manager that will own the arrays
     * @param target the floating-point type wanted, or null
     * @return a mutable map from name to array, in file order
     */
    public Map<String, NDArray> loadAll(NDManager manager, DataType target) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        try {
            for (String name : tensors.keySet()) {
                out.put(name, load(name, manager, target));
            }
        } catch (RuntimeException e) {
            out.values().forEach(NDArray::close);
            throw e;
        }
        return out;
    }

    /** @return bytes read at a time when a tensor is loaded */
    abstract long defaultChunkBytes();

    /** Loads with an explicit chunk size; package-private so tests can exercise the chunked paths. */
    abstract NDArray load(String name, NDManager manager, DataType target, long chunkBytes);

    @Override
    public abstract void close();
}
