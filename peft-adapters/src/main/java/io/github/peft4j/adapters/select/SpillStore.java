package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.nn.Ops;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Values set aside on disk instead of in memory: the originals of parameters an {@link InPlaceAdapter} trains in
 * place (needed again when it is deactivated or removed), and its tuned values while it is inactive. Each set is
 * one safetensors file in a private temporary directory, written atomically and read back on demand, so a
 * selection of whole layers keeps no second copy of their weights in (device) memory. The directory is deleted by
 * {@link #close} (and, as a fallback, at JVM exit).
 */
final class SpillStore implements AutoCloseable {
    private final Path dir;
    private final Map<String, Long> bytes = new LinkedHashMap<>();

    /** Creates the private directory. */
    SpillStore() {
        try {
            dir = Files.createTempDirectory("peft4j-select-");
        } catch (IOException e) {
            throw new PeftException("cannot create a temporary directory for the original values of selected parameters: "
                    + e.getMessage(), e);
        }
        dir.toFile().deleteOnExit();
    }

    /**
     * Writes a set of arrays (read, not closed), replacing a set of the same name.
     *
     * @param set the set name ({@code originals}, {@code tuned})
     * @param arrays key to array
     */
    void put(String set, Map<String, NDArray> arrays) {
        Path f = file(set);
        SafeTensorsWriter.write(f, arrays, Map.of("format", "pt"));
        f.toFile().deleteOnExit();
        try {
            bytes.put(set, Files.size(f));
        } catch (IOException e) {
            throw new PeftException(f + ": cannot read the size of a spilled set: " + e.getMessage(), e);
        }
    }

    /**
     * Reads a set back.
     *
     * @param set the set name
     * @param managerOf the manager that owns each key's result (its device)
     * @return key to a fresh libtorch-owned array outside any scope, in its saved dtype, in file order
     */
    Map<String, NDArray> getAll(String set, Function<String, NDManager> managerOf) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(file(set))) {
            for (String key : f.names()) {
                NDManager target = managerOf.apply(key);
                try (NDManager tmp = NDManager.newBaseManager(target.getDevice())) {
                    NDArray loaded = f.load(key, tmp);
                    out.put(key, Ops.ownedCopy(loaded, target, loaded.getDataType()));
                }
            }
        }
        return out;
    }

    /**
     * @param set a set name
     * @return the size of its file in bytes, 0 when it was never written
     */
    long bytes(String set) {
        return bytes.getOrDefault(set, 0L);
    }

    private Path file(String set) {
        return dir.resolve(set + ".safetensors");
    }

    /** Deletes the files and the directory. */
    @Override
    public void close() {
        try (var files = Files.list(dir)) {
            for (Path p : (Iterable<Path>) files::iterator) {
                Files.deleteIfExists(p);
            }
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            throw new PeftException(dir + ": cannot delete spilled values: " + e.getMessage(), e);
        }
        bytes.clear();
    }
}
