package io.github.peft4j.io;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * Writes DJL arrays as safetensors files, optionally sharded into a Hugging Face checkpoint directory.
 *
 * <p>The header is compact JSON with {@code __metadata__} first (if non-empty) followed by the tensors in
 * sorted name order, each with {@code dtype}, {@code shape} and {@code data_offsets}; it is padded with spaces
 * so that the data section starts at a multiple of 8 bytes. Tensor data follows contiguously in the same
 * sorted order, little-endian. Supported array types: FLOAT64, FLOAT32, FLOAT16, INT64, INT32, INT8, UINT8
 * and BOOLEAN. Arrays on a GPU are copied to the CPU; arrays larger than one chunk (1 GiB) are copied
 * out in slices so no single Java buffer reaches 2 GiB.
 *
 * <p>All arrays are checked (type, not closed) before anything is written, and every file is written with
 * {@link AtomicFiles}: on failure the temporary file is removed and an existing file is left as it was.
 */
public final class SafeTensorsWriter {
    /** The single-file checkpoint name. */
    public static final String SINGLE_FILE = "model.safetensors";
    /** The index file of a sharded checkpoint. */
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private static final byte[] SPACES = "        ".getBytes(StandardCharsets.US_ASCII);

    private SafeTensorsWriter() {}

    /**
     * Writes tensors to one safetensors file, atomically.
     *
     * @param file the file to create or replace
     * @param tensors the arrays by name; they are read, not closed
     * @param metadata the {@code __metadata__} strings (may be null or empty), for example {@code format=pt}
     * @throws PeftException if an array is closed or has an unsupported type (nothing is written then)
     * @throws UncheckedIOException if writing fails
     */
    public static void write(Path file, Map<String, NDArray> tensors, Map<String, String> metadata) {
        write(file, tensors, metadata, SafeTensorsFile.DEFAULT_CHUNK_BYTES);
    }

    /** Writes with an explicit chunk size; package-private so tests can exercise the sliced path. */
    static void write(Path file, Map<String, NDArray> tensors, Map<String, String> metadata, long chunkBytes) {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new UnsupportedOperationException("writing safetensors needs a little-endian host");
        }
        List<Entry> entries = entries(file, tensors);
        byte[] header = header(entries, metadata);
        AtomicFiles.write(file, out -> {
            ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
            out.write(length.array());
            out.write(header);
            for (Entry e : entries) {
                writeData(file, e, out, chunkBytes);
            }
        });
    }

    /**
     * Writes a Hugging Face checkpoint into a directory: one {@code model.safetensors} if the tensors total at
     * most {@code maxShardBytes}, otherwise shards {@code model-00001-of-0000N.safetensors} plus
     * {@code model.safetensors.index.json}.
     *
     * <p>Tensors are assigned to shards in sorted name order, a new shard starting when the next tensor would
     * push the current one past {@code maxShardBytes}; a tensor larger than the limit gets a shard of its own.
     * Every shard carries {@code metadata}; the index holds {@code {"metadata": {"total_size": N},
     * "weight_map": {...}}} with sorted keys and 2-space indentation, and is written last. Each file is
     * written atomically, but the directory as a whole is not: an existing index is deleted before the shards
     * are replaced, so a save that fails halfway leaves no index that could pair old and new shards. A stale
     * index left from an earlier sharded save is also deleted when a single file is written, since readers
     * would otherwise prefer it.
     *
     * @param dir the directory (created if missing)
     * @param tensors the arrays by name
     * @param metadata the {@code __metadata__} strings of each file (may be null)
     * @param maxShardBytes the largest total tensor data of one shard, in bytes (positive)
     * @throws PeftException if an array is closed or has an unsupported type, or maxShardBytes is not positive
     * @throws UncheckedIOException if writing fails
     */
    public static void writeSharded(Path dir, Map<String, NDArray> tensors, Map<String, String> metadata,
            long maxShardBytes) {
        if (maxShardBytes <= 0) {
            throw new PeftException(dir + ": maxShardBytes must be positive, got " + maxShardBytes);
        }
        List<Entry> entries = entries(dir, tensors);
        long total = 0;
        for (Entry e : entries) {
            total += e.info.byteLength();
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + dir + ": " + e.getMessage(), e);
        }
        if (total <= maxShardBytes) {
            write(dir.resolve(SINGLE_FILE), tensors, metadata);
            deleteStaleIndex(dir);
            return;
        }
        deleteStaleIndex(dir);
        List<Map<String, NDArray>> shards = new ArrayList<>();
        Map<String, NDArray> current = new TreeMap<>();
        long currentBytes = 0;
        for (Entry e : entries) {
            long size = e.info.byteLength();
            if (!current.isEmpty() && currentBytes + size > maxShardBytes) {
                shards.add(current);
                current = new TreeMap<>();
                currentBytes = 0;
            }
            current.put(e.info.name(), e.array);
            currentBytes += size;
        }
        shards.add(current);

        ObjectNode weightMap = SafeTensorsFile.JSON.createObjectNode();
        for (int i = 0; i < shards.size(); i++) {
            String shardName = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            write(dir.resolve(shardName), shards.get(i), metadata);
            for (String name : shards.get(i).keySet()) {
                weightMap.put(name, shardName);
            }
        }
        ObjectNode index = SafeTensorsFile.JSON.createObjectNode();
        index.putObject("metadata").put("total_size", total);
        index.set("weight_map", weightMap);
        AtomicFiles.writeString(dir.resolve(INDEX_FILE), prettyJson(index));
    }

    private static void deleteStaleIndex(Path dir) {
        Path index = dir.resolve(INDEX_FILE);
        try {
            Files.deleteIfExists(index);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete stale " + index + ": " + e.getMessage(), e);
        }
    }

    /** Formats JSON like Python's {@code json.dumps(obj, indent=2)}, ending with a newline. */
    static String prettyJson(ObjectNode node) {
        DefaultPrettyPrinter printer = new DefaultPrettyPrinter()
                .withSeparators(Separators.createDefaultInstance()
                        .withObjectFieldValueSpacing(Separators.Spacing.AFTER));
        printer.indentObjectsWith(new DefaultIndenter("  ", "\n"));
        try {
            return SafeTensorsFile.JSON.writer(printer).writeValueAsString(node) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private record Entry(TensorInfo info, NDArray array) {}

    /** Validates every array and lays out the data section, in sorted name order. */
    private static List<Entry> entries(Path where, Map<String, NDArray> tensors) {
        Objects.requireNonNull(tensors, "tensors");
        List<Entry> entries = new ArrayList<>();
        long offset = 0;
        for (Map.Entry<String, NDArray> e : new TreeMap<>(tensors).entrySet()) {
            String name = e.getKey();
            NDArray array = e.getValue();
            if (array == null || array.isReleased()) {
                throw new PeftException(where + ": tensor '" + name + "' is " + (array == null ? "null" : "closed")
                        + ", expected an open NDArray");
            }
            TensorDType dtype = TensorDType.forWriting(array.getDataType()).orElseThrow(() -> new PeftException(
                    where + ": tensor '" + name + "' has type " + array.getDataType() + ", expected one of "
                            + "FLOAT64, FLOAT32, FLOAT16, INT64, INT32, INT8, UINT8, BOOLEAN"));
            long[] shape = array.getShape().getShape();
            long end = offset + Math.multiplyExact(array.getShape().size(), (long) dtype.byteSize());
            entries.add(new Entry(new TensorInfo(name, dtype, shape, offset, end), array));
            offset = end;
        }
        return entries;
    }

    private static byte[] header(List<Entry> entries, Map<String, String> metadata) {
        ObjectNode root = SafeTensorsFile.JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = root.putObject("__metadata__");
            new TreeMap<>(metadata).forEach(meta::put);
        }
        for (Entry e : entries) {
            ObjectNode t = root.putObject(e.info.name());
            t.put("dtype", e.info.dtype().safetensorsName());
            ArrayNode shape = t.putArray("shape");
            Arrays.stream(e.info.shape()).forEach(shape::add);
            t.putArray("data_offsets").add(e.info.begin()).add(e.info.end());
        }
        byte[] json;
        try {
            json = SafeTensorsFile.JSON.writeValueAsBytes(root);
        } catch (JsonProcessingException ex) {
            throw new IllegalStateException(ex);
        }
        int padding = (8 - json.length % 8) % 8; // 8 + header length stays a multiple of 8
        byte[] header = Arrays.copyOf(json, json.length + padding);
        System.arraycopy(SPACES, 0, header, json.length, padding);
        return header;
    }

    private static void writeData(Path file, Entry e, OutputStream out, long chunkBytes) throws IOException {
        long numel = e.info.numel();
        if (numel == 0) {
            return;
        }
        NDArray array = e.array;
        boolean copied = false;
        if (!Device.cpu().equals(array.getDevice())) {
            array = array.toDevice(Device.cpu(), false);
            copied = true;
        }
        try {
            long chunkElements = Math.max(1, chunkBytes / e.info.dtype().byteSize());
            if (numel <= chunkElements) {
                writeBuffer(file, e.info, array.toByteBuffer(), numel, out);
                return;
            }
            try (NDArray flat = array.reshape(numel)) {
                for (long start = 0; start < numel; start += chunkElements) {
                    long count = Math.min(chunkElements, numel - start);
                    try (NDArray part = flat.get(new NDIndex("{}:{}", start, start + count))) {
                        writeBuffer(file, e.info, part.toByteBuffer(), count, out);
                    }
                }
            }
        } finally {
            if (copied) {
                array.close();
            }
        }
    }

    /** Writes the bytes of {@code count} elements; DJL returns them in native (here little-endian) order. */
    private static void writeBuffer(Path file, TensorInfo info, ByteBuffer data, long count, OutputStream out)
            throws IOException {
        long expected = count * info.dtype().byteSize();
        if (data.remaining() != expected) {
            throw new PeftException(file + ": tensor '" + info.name() + "' gave " + data.remaining()
                    + " bytes, expected " + expected);
        }
        if (data.hasArray()) {
            out.write(data.array(), data.arrayOffset() + data.position(), data.remaining());
        } else {
            byte[] chunk = new byte[Math.min(data.remaining(), 1 << 20)];
            while (data.hasRemaining()) {
                int n = Math.min(chunk.length, data.remaining());
                data.get(chunk, 0, n);
                out.write(chunk, 0, n);
            }
        }
    }
}
