package io.github.peft4j.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.IntUnaryOperator;

/**
 * A safetensors file opened for reading.
 *
 * <p>{@link #open(Path)} reads and validates the whole header before any tensor data is touched: the header
 * length, the JSON, every dtype, shape and {@code data_offsets} entry, that each byte range matches its
 * shape and dtype, lies inside the data section and overlaps no other tensor, and the optional
 * {@code __metadata__} map. Problems are reported as {@link PeftException}s naming the file and the tensor.
 *
 * <p>Tensor data is read through read-only memory mappings of the file, each smaller than 2 GiB. A tensor
 * whose data fits in one chunk (1 GiB) is mapped, handed to libtorch and copied ({@link NDArray#duplicate()});
 * a larger tensor is allocated flat in libtorch and filled chunk by chunk, then reshaped. Either way the
 * returned array owns its memory, so it stays valid after this file is closed and its mappings are gone.
 * All data is little-endian, as the format requires; loading needs a little-endian host.
 *
 * <p>Instances are safe for concurrent {@code load} calls. Closing the file closes its channel; arrays
 * loaded earlier are unaffected.
 */
public final class SafeTensorsFile extends TensorFile<TensorInfo> {
    /** The largest header accepted, in bytes. */
    public static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

    /** Bytes read per mapping when a tensor is loaded; a multiple of every dtype size, below 2 GiB. */
    static final long DEFAULT_CHUNK_BYTES = 1L << 30;

    static final ObjectMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private static final String METADATA_KEY = "__metadata__";

    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, String> metadata;

    private SafeTensorsFile(Path file, FileChannel channel, long dataStart, Map<String, TensorInfo> tensors,
            Map<String, String> metadata) {
        super(file, tensors);
        this.channel = channel;
        this.dataStart = dataStart;
        this.metadata = metadata;
    }

    /**
     * Opens a safetensors file and validates its header.
     *
     * @param file the {@code .safetensors} file
     * @return the open file; close it when done
     * @throws PeftException if the file is not a valid safetensors file (the message names the file and,
     *     where it applies, the tensor, and says what was expected and what was found)
     * @throws UncheckedIOException if the file cannot be read
     */
    public static SafeTensorsFile open(Path file) {
        FileChannel channel;
        try {
            channel = FileChannel.open(file, StandardOpenOption.READ);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + file + ": " + e.getMessage(), e);
        }
        try {
            long fileSize = channel.size();
            if (fileSize < 8) {
                throw new PeftException(file + ": file is " + fileSize
                        + " bytes, too short for the 8-byte safetensors header length");
            }
            ByteBuffer lengthBytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(channel, lengthBytes, 0);
            long headerLength = lengthBytes.getLong(0);
            if (headerLength <= 0 || headerLength > MAX_HEADER_BYTES) {
                throw new PeftException(file + ": header length is " + headerLength
                        + ", expected between 1 and " + MAX_HEADER_BYTES + " bytes");
            }
            if (8 + headerLength > fileSize) {
                throw new PeftException(file + ": header length is " + headerLength + " but the file has only "
                        + (fileSize - 8) + " bytes after the length field (truncated or not safetensors)");
            }
            ByteBuffer header = ByteBuffer.allocate((int) headerLength);
            readFully(channel, header, 8);
            long dataSize = fileSize - 8 - headerLength;
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, TensorInfo> tensors = parseHeader(file, header.array(), dataSize, metadata);
            return new SafeTensorsFile(file, channel, 8 + headerLength, Collections.unmodifiableMap(tensors),
                    Collections.unmodifiableMap(metadata));
        } catch (IOException e) {
            closeQuietly(channel);
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeQuietly(channel);
            throw e;
        }
    }

    private static Map<String, TensorInfo> parseHeader(Path file, byte[] header, long dataSize,
            Map<String, String> metadataOut) {
        JsonNode root;
        try {
            root = JSON.readTree(header);
        } catch (JsonProcessingException e) {
            throw new PeftException(file + ": header is not valid JSON: " + e.getOriginalMessage(), e);
        } catch (IOException e) {
            throw new PeftException(file + ": header is not valid JSON: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new PeftException(file + ": header must be a JSON object, found "
                    + (root == null ? "nothing" : root.getNodeType()));
        }
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> field = it.next();
            if (METADATA_KEY.equals(field.getKey())) {
                parseMetadata(file, field.getValue(), metadataOut);
            } else {
                tensors.put(field.getKey(), parseTensor(file, field.getKey(), field.getValue(), dataSize));
            }
        }
        checkNoOverlap(file, tensors);
        return tensors;
    }

    private static void parseMetadata(Path file, JsonNode node, Map<String, String> out) {
        if (!node.isObject()) {
            throw new PeftException(file + ": __metadata__ must be an object of strings, found " + node.getNodeType());
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> e = it.next();
            if (!e.getValue().isTextual()) {
                throw new PeftException(file + ": __metadata__ value for '" + e.getKey()
                        + "' must be a string, found " + e.getValue().getNodeType());
            }
            out.put(e.getKey(), e.getValue().textValue());
        }
    }

    private static TensorInfo parseTensor(Path file, String name, JsonNode node, long dataSize) {
        String where = file + ": tensor '" + name + "'";
        if (!node.isObject()) {
            throw new PeftException(where + " must be an object with dtype, shape and data_offsets, found "
                    + node.getNodeType());
        }
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw new PeftException(where + " has no string 'dtype'");
        }
        TensorDType dtype = TensorDType.fromSafetensors(dtypeNode.textValue()).orElseThrow(() -> new PeftException(
                where + " has unsupported dtype '" + dtypeNode.textValue() + "', expected one of "
                        + Arrays.toString(TensorDType.values())));
        long[] shape = longArray(where, "shape", node.get("shape"), -1);
        long[] offsets = longArray(where, "data_offsets", node.get("data_offsets"), 2);
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end || end > dataSize) {
            throw new PeftException(where + " has data_offsets [" + begin + ", " + end
                    + "] but the data section is [0, " + dataSize + "] bytes"
                    + (end > dataSize ? " (file truncated?)" : ""));
        }
        TensorInfo info = new TensorInfo(name, dtype, shape, begin, end);
        long needed;
        try {
            needed = info.byteLength();
        } catch (ArithmeticException e) {
            throw new PeftException(where + " has shape " + Arrays.toString(shape) + " whose size overflows a long");
        }
        if (end - begin != needed) {
            throw new PeftException(where + " has data_offsets [" + begin + ", " + end + "] (" + (end - begin)
                    + " bytes) but shape " + Arrays.toString(shape) + " with dtype " + dtype + " needs "
                    + needed + " bytes");
        }
        return info;
    }

    /** Parses a JSON array of non-negative integers; {@code length} -1 means any length. */
    private static long[] longArray(String where, String key, JsonNode node, int length) {
        String expected = "'" + key + "' to be an array of " + (length < 0 ? "" : length + " ")
                + "non-negative integers";
        if (node == null || !node.isArray() || (length >= 0 && node.size() != length)) {
            throw new PeftException(where + ": expected " + expected + ", found " + node);
        }
        long[] values = new long[node.size()];
        for (int i = 0; i < values.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw new PeftException(where + ": expected " + expected + ", found " + node);
            }
            values[i] = v.longValue();
        }
        return values;
    }

    private static void checkNoOverlap(Path file, Map<String, TensorInfo> tensors) {
        List<TensorInfo> sorted = new ArrayList<>(tensors.values());
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        TensorInfo previous = null;
        for (TensorInfo t : sorted) {
            if (t.begin() == t.end()) {
                continue; // empty tensors occupy no bytes
            }
            if (previous != null && t.begin() < previous.end()) {
                throw new PeftException(file + ": tensor '" + t.name() + "' data_offsets [" + t.begin() + ", "
                        + t.end() + "] overlap tensor '" + previous.name() + "' data_offsets [" + previous.begin()
                        + ", " + previous.end() + "]");
            }
            previous = t;
        }
    }

    /**
     * Returns the {@code __metadata__} map of the header (empty if absent).
     *
     * @return an unmodifiable map in header order
     */
    public Map<String, String> metadata() {
        return metadata;
    }

    @Override
    long defaultChunkBytes() {
        return DEFAULT_CHUNK_BYTES;
    }

    @Override
    NDArray load(String name, NDManager manager, DataType target, long chunkBytes) {
        Objects.requireNonNull(manager, "manager");
        TensorInfo info = info(name);
        info.dtype().checkLoadTarget(file, info.name(), target);
        if (!channel.isOpen()) {
            throw new IllegalStateException(file + " is closed");
        }
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new UnsupportedOperationException("loading safetensors needs a little-endian host");
        }
        // BF16 into BF16 (only where the engine holds BF16, see TensorDType.checkLoadTarget): the file's bits as they are
        boolean raw = target == DataType.BFLOAT16 && info.dtype() == TensorDType.BF16;
        NDArray array;
        try {
            array = read(info, manager, chunkBytes, raw);
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": cannot read tensor '" + name + "': " + e.getMessage(), e);
        }
        if (target != null && info.dtype().isFloating() && array.getDataType() != target) {
            NDArray converted = array.toType(target, false);
            array.close();
            array = converted;
        }
        array.setName(name);
        return array;
    }

    private NDArray read(TensorInfo info, NDManager manager, long chunkBytes, boolean raw) throws IOException {
        TensorDType dtype = info.dtype();
        DataType memoryType = raw ? DataType.BFLOAT16 : dtype.memoryType();
        Shape shape = info.djlShape();
        long numel = info.numel();
        if (numel == 0) {
            return manager.zeros(shape, memoryType);
        }
        long position = dataStart + info.begin();
        // bound both the mapping (file bytes) and the Java buffer (BF16 and I16 widen to 4 bytes an element)
        int elementBytes = Math.max(dtype.byteSize(), memoryType.getNumOfBytes());
        long chunkElements = Math.max(1, chunkBytes / elementBytes);
        if (numel <= chunkElements) {
            NDArray view = wrap(position, numel, dtype, shape, manager, raw);
            try {
                return view.duplicate(); // torch clone: copies out of the mapping into libtorch memory
            } finally {
                view.close();
            }
        }
        // Too large for one mapping or one DJL buffer: fill a flat libtorch array chunk by chunk.
        NDArray flat = manager.zeros(new Shape(numel), memoryType);
        try {
            for (long start = 0; start < numel; start += chunkElements) {
                long count = Math.min(chunkElements, numel - start);
                try (NDArray part = wrap(position + start * dtype.byteSize(), count, dtype, new Shape(count),
                        manager, raw)) {
                    flat.set(new NDIndex("{}:{}", start, start + count), part);
                }
            }
            return flat.reshape(shape);
        } finally {
            flat.close();
        }
    }

    /**
     * Maps {@code count} elements at {@code position} and wraps them in a temporary DJL array that may alias
     * the mapping (or a Java direct buffer for BF16); the caller must copy and close it.
     */
    private NDArray wrap(long position, long count, TensorDType dtype, Shape shape, NDManager manager, boolean raw)
            throws IOException {
        ByteBuffer bytes = channel.map(FileChannel.MapMode.READ_ONLY, position, count * dtype.byteSize())
                .order(ByteOrder.LITTLE_ENDIAN);
        if (raw) {
            return manager.create(bytes, shape, DataType.BFLOAT16);
        }
        if (dtype == TensorDType.BF16) {
            bytes = widen(bytes, (int) count, v -> (v & 0xFFFF) << 16); // bf16 bits are a float's upper half
        } else if (dtype == TensorDType.I16) {
            bytes = widen(bytes, (int) count, v -> v); // sign extension
        }
        return manager.create(bytes, shape, dtype.memoryType());
    }

    /** Widens 16-bit elements to 32-bit ones in a new direct buffer, mapping each value with {@code f}. */
    private static ByteBuffer widen(ByteBuffer src, int count, IntUnaryOperator f) {
        ByteBuffer out = ByteBuffer.allocateDirect(Math.multiplyExact(count, 4)).order(ByteOrder.nativeOrder());
        for (int i = 0; i < count; i++) {
            out.putInt(i * 4, f.applyAsInt(src.getShort(i * 2)));
        }
        return out;
    }

    private static void readFully(FileChannel channel, ByteBuffer buffer, long position) throws IOException {
        while (buffer.hasRemaining()) {
            int n = channel.read(buffer, position);
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
            position += n;
        }
    }

    private static void closeQuietly(FileChannel channel) {
        try {
            channel.close();
        } catch (IOException ignored) {
            // reporting the original failure
        }
    }

    /**
     * Closes the file. Arrays already loaded stay valid.
     *
     * @throws UncheckedIOException if closing the channel fails
     */
    @Override
    public void close() {
        try {
            channel.close();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot close " + file + ": " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "SafeTensorsFile[" + file + ", " + tensors.size() + " tensors]";
    }
}
