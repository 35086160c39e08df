package io.github.peft4j.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import java.nio.file.Path;
import java.util.Map;

/** Reads a whole weights file, safetensors or a {@code torch.save} state dict, chosen by the file name. */
public final class WeightFiles {
    private WeightFiles() {}

    /**
     * Loads every tensor of a weights file: {@code *.safetensors} with {@link SafeTensorsFile}, {@code *.bin},
     * {@code *.pt} and {@code *.pth} with {@link TorchBinFile} (which never runs pickled code).
     *
     * @param file the weights file
     * @param manager the manager that will own the arrays
     * @param target the floating-point type wanted, or null to keep each tensor's in-memory type
     * @return a mutable map from name to array, in file order
     * @throws PeftException if the file name has another extension or the file is invalid
     */
    public static Map<String, NDArray> loadAll(Path file, NDManager manager, DataType target) {
        try (TensorFile<?> f = TensorFile.open(file)) {
            return f.loadAll(manager, target);
        }
    }
}
