package io.github.peft4j.io;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.TorchUnpickler.PickleDict;
import io.github.peft4j.io.TorchUnpickler.StorageRef;
import io.github.peft4j.io.TorchUnpickler.TensorRef;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Enumeration;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipFile;

/**
 * A PyTorch {@code .bin} / {@code .pt} state dict (the zip format {@code torch.save} writes since PyTorch 1.6)
 * opened for reading, safely: no pickled code ever runs.
 *
 * <p>The archive holds {@code <prefix>/data.pkl} (a pickle describing the state dict), one raw little-endian
 * record {@code <prefix>/data/<key>} per storage, and {@code <prefix>/byteorder}; the prefix (for example
 * {@code archive} or the file's stem) is found from data.pkl's path. {@link #open(Path)} reads data.pkl with
 * a restricted unpickler that admits only the globals {@code torch.save} writes for tensors
 * ({@code collections.OrderedDict}, {@code torch._utils._rebuild_tensor_v2}, {@code _rebuild_tensor},
 * {@code _rebuild_parameter} and the {@code torch.*Storage} types in {@link TensorDType}'s range) and
 * refuses anything else with a {@link PeftException} naming the file and the global, for example
 * {@code x.bin: data.pkl offset 2: global 'posix.system' is not allowed (only torch tensor storages and
 * OrderedDict)}. It then checks every tensor against its storage record: the record exists, holds exactly
 * the storage's elements, and the view's offset, sizes and strides stay inside it.
 *
 * <p>The top-level object must be a dict (or OrderedDict) from string keys to tensors (plain tensors or
 * {@code nn.Parameter}s): a flat state dict, as HF PEFT's legacy {@code adapter_model.bin} and AdapterHub's
 * {@code pytorch_adapter.bin} are. Strided views (transposes, slices, expanded tensors) and tensors sharing a
 * storage load as their logical contents. Element types as {@link SafeTensorsFile}: BF16 is widened to
 * FLOAT32 and I16 to INT32 in Java (exact), the rest keep their natural DJL type.
 *
 * <p>The legacy pre-1.6 format (a bare pickle stream) and big-endian files are refused. Instances are safe for
 * concurrent {@code load} calls; arrays loaded stay valid after {@link #close()}.
 */
public final class TorchBinFile extends TensorFile<TorchTensorInfo> {
    /** The largest data.pkl accepted, in bytes (a state dict of 100,000 tensors takes about 20 MB). */
    public static final long MAX_PICKLE_BYTES = 64L * 1024 * 1024;

    /** Bytes read from a record at a time when loading; bounds the Java buffers a load uses. */
    static final long DEFAULT_CHUNK_BYTES = 64L << 20;

    /** The largest storage span a non-contiguous view may cover (it is read whole, into one Java array). */
    static final long MAX_STRIDED_SPAN_BYTES = Integer.MAX_VALUE - 64;

    private final ZipFile zip;
    private final String prefix;

    private TorchBinFile(Path file, ZipFile zip, String prefix, Map<String, TorchTensorInfo> tensors) {
        super(file, tensors);
        this.zip = zip;
        this.prefix = prefix;
    }

    /**
     * Opens a {@code torch.save} zip file, reads its data.pkl with the restricted unpickler and validates every
     * tensor against its storage record. No tensor data is read yet.
     *
     * @param file the {@code .bin} (or {@code .pt}, {@code .pth}) file
     * @return the open file; close it when done
     * @throws PeftException if the file is not a torch.save zip, its pickle uses anything outside the allowed
     *     subset, it is truncated, or a tensor does not fit its storage (the message names the file and what
     *     was wrong)
     * @throws UncheckedIOException if the file cannot be read
     */
    public static TorchBinFile open(Path file) {
        return open(file, TorchUnpickler.Limits.DEFAULT, MAX_PICKLE_BYTES);
    }

    /** Opens with explicit caps; package-private so tests can reach the caps with small files. */
    static TorchBinFile open(Path file, TorchUnpickler.Limits limits, long maxPickleBytes) {
        Objects.requireNonNull(file, "file");
        checkMagic(file);
        ZipFile zip;
        try {
            zip = new ZipFile(file.toFile());
        } catch (ZipException e) {
            throw new PeftException(file + ": not a readable zip archive (" + e.getMessage()
                    + "); torch.save's zip format was expected (truncated or corrupt file?)", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + file + ": " + e.getMessage(), e);
        }
        try {
            String prefix = findPrefix(file, zip);
            checkByteOrder(file, zip, prefix);
            ZipEntry pickleEntry = zip.getEntry(prefix + "data.pkl");
            byte[] pickle = readEntry(file, zip, pickleEntry, maxPickleBytes);
            Object root = TorchUnpickler.load(file + ": data.pkl", pickle, limits);
            Map<String, TorchTensorInfo> tensors = tensors(file, zip, prefix, root);
            return new TorchBinFile(file, zip, prefix, Collections.unmodifiableMap(tensors));
        } catch (IOException e) {
            closeQuietly(zip);
            if (e instanceof ZipException || e instanceof EOFException) {
                throw new PeftException(file + ": corrupt zip archive: " + e.getMessage(), e);
            }
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeQuietly(zip);
            throw e;
        }
    }

    /** Refuses the legacy (pre-1.6) format, a bare pickle stream, with a message that says so. */
    private static void checkMagic(Path file) {
        byte[] head = new byte[4];
        int n;
        try (InputStream in = Files.newInputStream(file)) {
            n = in.readNBytes(head, 0, 4);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open " + file + ": " + e.getMessage(), e);
        }
        if (n > 0 && (head[0] & 0xFF) == 0x80) {
            throw new PeftException(file + ": legacy torch.save format (a bare pickle, written by PyTorch < 1.6 or "
                    + "with _use_new_zipfile_serialization=False) is not supported; re-save it with a current "
                    + "torch.save or as safetensors");
        }
        if (n < 4 || head[0] != 'P' || head[1] != 'K') {
            throw new PeftException(file + ": not a zip archive (" + n + " bytes read, no 'PK' signature); "
                    + "torch.save's zip format was expected");
        }
    }

    private static String findPrefix(Path file, ZipFile zip) {
        List<String> found = new ArrayList<>();
        for (Enumeration<? extends ZipEntry> it = zip.entries(); it.hasMoreElements();) {
            String name = it.nextElement().getName();
            int slash = name.indexOf('/');
            if (slash > 0 && name.indexOf('/', slash + 1) < 0 && name.substring(slash + 1).equals("data.pkl")) {
                found.add(name);
            }
        }
        if (found.size() != 1) {
            throw new PeftException(file + ": expected exactly one <archive>/data.pkl entry, found "
                    + (found.isEmpty() ? "none (not a torch.save file?)" : found.size() + ": " + found));
        }
        String name = found.get(0);
        return name.substring(0, name.indexOf('/') + 1);
    }

    private static void checkByteOrder(Path file, ZipFile zip, String prefix) throws IOException {
        ZipEntry entry = zip.getEntry(prefix + "byteorder");
        if (entry == null) {
            return; // written since PyTorch 1.10; older files are little-endian
        }
        String order = new String(readEntry(file, zip, entry, 16), StandardCharsets.US_ASCII).strip();
        if (!order.equals("little")) {
            throw new PeftException(file + ": byteorder is '" + TorchUnpickler.printable(order)
                    + "', only 'little' is supported");
        }
    }

    /** Reads a whole entry of at most {@code max} bytes, refusing a larger one without reading past the cap. */
    private static byte[] readEntry(Path file, ZipFile zip, ZipEntry entry, long max) throws IOException {
        if (entry.getSize() > max) {
            throw new PeftException(file + ": " + entry.getName() + " is " + entry.getSize()
                    + " bytes, more than the limit of " + max);
        }
        try (InputStream in = zip.getInputStream(entry)) {
            byte[] bytes = in.readNBytes((int) Math.min(max + 1, Integer.MAX_VALUE - 64));
            if (bytes.length > max) {
                throw new PeftException(file + ": " + entry.getName() + " holds more than the limit of " + max
                        + " bytes");
            }
            if (entry.getSize() >= 0 && bytes.length != entry.getSize()) {
                throw new PeftException(file + ": " + entry.getName() + " has " + bytes.length
                        + " bytes but the zip directory says " + entry.getSize() + " (truncated?)");
            }
            return bytes;
        }
    }

    /** Checks the unpickled root and turns it into tensor entries, validated against their records. */
    private static Map<String, TorchTensorInfo> tensors(Path file, ZipFile zip, String prefix, Object root) {
        if (!(root instanceof PickleDict dict)) {
            throw new PeftException(file + ": data.pkl holds a " + TorchUnpickler.typeName(root)
                    + ", expected a dict of tensors (a state dict)");
        }
        Map<String, TorchTensorInfo> out = new LinkedHashMap<>();
        Set<String> checkedRecords = new HashSet<>();
        for (Map.Entry<Object, Object> e : dict.items.entrySet()) {
            if (!(e.getKey() instanceof String name)) {
                throw new PeftException(file + ": state dict key " + TorchUnpickler.describe(e.getKey())
                        + " is not a string");
            }
            String where = file + ": tensor '" + TorchUnpickler.printable(name) + "'";
            if (!(e.getValue() instanceof TensorRef t)) {
                throw new PeftException(where + " holds a " + TorchUnpickler.typeName(e.getValue())
                        + ", expected a tensor (only flat state dicts of tensors are read)");
            }
            StorageRef s = t.storage;
            TensorDType dtype = s.type().dtype;
            if (checkedRecords.add(s.key())) {
                checkRecord(file, zip, prefix, s, where);
            }
            TorchTensorInfo info = new TorchTensorInfo(name, dtype, t.size, t.stride, s.key(), t.offset);
            long span;
            try {
                info.numel();
                span = info.spanElements();
                if (span > 0 && Math.addExact(t.offset, span) > s.numel()) {
                    throw new PeftException(where + " (shape " + Arrays.toString(t.size) + ", stride "
                            + Arrays.toString(t.stride) + ", offset " + t.offset + ") reaches element "
                            + (t.offset + span - 1) + " but storage '" + s.key() + "' has " + s.numel()
                            + " elements");
                }
            } catch (ArithmeticException ex) {
                throw new PeftException(where + " has shape " + Arrays.toString(t.size) + " and stride "
                        + Arrays.toString(t.stride) + " whose extent overflows a long");
            }
            if (!info.isContiguous() && span * dtype.byteSize() > MAX_STRIDED_SPAN_BYTES) {
                throw new PeftException(where + " is a non-contiguous view spanning " + span * dtype.byteSize()
                        + " bytes; at most " + MAX_STRIDED_SPAN_BYTES + " are supported");
            }
            out.put(name, info);
        }
        return out;
    }

    /** Checks that a storage's record exists and holds exactly the storage's bytes (as torch.load does). */
    private static void checkRecord(Path file, ZipFile zip, String prefix, StorageRef s, String where) {
        String recordName = prefix + "data/" + s.key();
        ZipEntry record = zip.getEntry(recordName);
        if (record == null || record.isDirectory()) {
            throw new PeftException(where + ": storage record '" + recordName + "' is missing from the archive");
        }
        long needed;
        try {
            needed = Math.multiplyExact(s.numel(), (long) s.type().dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new PeftException(where + ": storage '" + s.key() + "' numel " + s.numel() + " overflows");
        }
        if (record.getSize() != needed) {
            throw new PeftException(where + ": storage '" + s.key() + "' is " + s.type().className + " of "
                    + s.numel() + " elements (" + needed + " bytes) but record '" + recordName + "' has "
                    + record.getSize() + " bytes");
        }
    }

    @Override
    long defaultChunkBytes() {
        return DEFAULT_CHUNK_BYTES;
    }

    @Override
    NDArray load(String name, NDManager manager, DataType target, long chunkBytes) {
        Objects.requireNonNull(manager, "manager");
        TorchTensorInfo info = info(name);
        info.dtype().checkLoadTarget(file, name, target);
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new UnsupportedOperationException("loading torch.save files needs a little-endian host");
        }
        NDArray array;
        try {
            array = read(info, manager, chunkBytes);
        } catch (EOFException | ZipException e) {
            throw new PeftException(file + ": tensor '" + name + "': storage record '" + recordName(info)
                    + "' cannot be read: " + e.getMessage() + " (truncated or corrupt)", e);
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

    private String recordName(TorchTensorInfo info) {
        return prefix + "data/" + info.storageKey();
    }

    private NDArray read(TorchTensorInfo info, NDManager manager, long chunkBytes) throws IOException {
        TensorDType dtype = info.dtype();
        DataType type = dtype.memoryType();
        Shape shape = info.djlShape();
        long numel = info.numel();
        if (numel == 0) {
            return manager.zeros(shape, type);
        }
        int elementBytes = dtype.byteSize();
        long chunkElements = Math.max(1, chunkBytes / Math.max(elementBytes, type.getNumOfBytes()));
        ZipEntry record = zip.getEntry(recordName(info));
        try (InputStream in = zip.getInputStream(record)) {
            in.skipNBytes(info.storageOffset() * elementBytes);
            if (info.isContiguous()) {
                if (numel <= chunkElements) {
                    return own(manager, convert(readBytes(in, numel * elementBytes), dtype), shape, type);
                }
                NDArray flat = manager.zeros(new Shape(numel), type);
                try {
                    for (long start = 0; start < numel; start += chunkElements) {
                        long count = Math.min(chunkElements, numel - start);
                        ByteBuffer part = convert(readBytes(in, count * elementBytes), dtype);
                        try (NDArray p = manager.create(part, new Shape(count), type)) {
                            flat.set(new NDIndex("{}:{}", start, start + count), p);
                        }
                    }
                    return flat.reshape(shape);
                } finally {
                    flat.close();
                }
            }
            // A strided view: read the span it covers once, then gather its elements in row-major order.
            ByteBuffer span = ByteBuffer.wrap(readBytes(in, info.spanElements() * elementBytes))
                    .order(ByteOrder.LITTLE_ENDIAN);
            if (numel <= chunkElements) {
                return own(manager, gather(span, info, 0, (int) numel), shape, type);
            }
            NDArray flat = manager.zeros(new Shape(numel), type);
            try {
                for (long start = 0; start < numel; start += chunkElements) {
                    int count = (int) Math.min(chunkElements, numel - start);
                    try (NDArray p = manager.create(gather(span, info, start, count), new Shape(count), type)) {
                        flat.set(new NDIndex("{}:{}", start, start + count), p);
                    }
                }
                return flat.reshape(shape);
            } finally {
                flat.close();
            }
        }
    }

    /** Hands a Java buffer to libtorch and returns a libtorch-owned copy. */
    private static NDArray own(NDManager manager, ByteBuffer data, Shape shape, DataType type) {
        NDArray view = manager.create(data, shape, type);
        try {
            return view.duplicate();
        } finally {
            view.close();
        }
    }

    private static byte[] readBytes(InputStream in, long n) throws IOException {
        if (n > Integer.MAX_VALUE - 64) {
            throw new IllegalStateException("read of " + n + " bytes exceeds one Java array"); // bounded by callers
        }
        byte[] bytes = in.readNBytes((int) n);
        if (bytes.length != n) {
            throw new EOFException("ended after " + bytes.length + " of " + n + " bytes");
        }
        return bytes;
    }

    /** Converts little-endian file elements to a direct native-order buffer of in-memory elements (BOOL as 0/1). */
    private static ByteBuffer convert(byte[] src, TensorDType dtype) {
        ByteBuffer in = ByteBuffer.wrap(src).order(ByteOrder.LITTLE_ENDIAN);
        int count = src.length / dtype.byteSize();
        ByteBuffer out = ByteBuffer.allocateDirect(count * dtype.memoryType().getNumOfBytes())
                .order(ByteOrder.nativeOrder());
        if (dtype != TensorDType.BF16 && dtype != TensorDType.I16 && dtype != TensorDType.BOOL) {
            return out.put(src).flip(); // same bytes: the host is little-endian
        }
        for (int i = 0; i < count; i++) {
            put(out, in, i * dtype.byteSize(), dtype);
        }
        return out.flip();
    }

    /**
     * Gathers {@code count} elements of a strided view, starting at row-major element {@code first}, from
     * {@code span} (the storage from the view's offset on) into a direct buffer of in-memory elements.
     */
    private static ByteBuffer gather(ByteBuffer span, TorchTensorInfo info, long first, int count) {
        long[] shape = info.shape();
        long[] stride = info.stride();
        int rank = shape.length;
        int elementBytes = info.dtype().byteSize();
        long[] index = new long[rank];
        long rest = first;
        long position = 0; // element offset into span
        for (int d = rank - 1; d >= 0; d--) {
            index[d] = rest % shape[d];
            rest /= shape[d];
            position += index[d] * stride[d];
        }
        ByteBuffer out = ByteBuffer.allocateDirect(count * info.dtype().memoryType().getNumOfBytes())
                .order(ByteOrder.nativeOrder());
        for (int i = 0; i < count; i++) {
            put(out, span, Math.toIntExact(position * elementBytes), info.dtype());
            for (int d = rank - 1; d >= 0; d--) { // odometer step
                index[d]++;
                position += stride[d];
                if (index[d] < shape[d]) {
                    break;
                }
                position -= index[d] * stride[d];
                index[d] = 0;
            }
        }
        return out.flip();
    }

    /** Appends one element read at byte {@code at} of {@code src}, widening BF16 and I16, normalising BOOL. */
    private static void put(ByteBuffer out, ByteBuffer src, int at, TensorDType dtype) {
        switch (dtype) {
            case BF16 -> out.putInt((src.getShort(at) & 0xFFFF) << 16); // bf16 bits are a float's upper half
            case I16 -> out.putInt(src.getShort(at)); // sign extension
            case F64, I64 -> out.putLong(src.getLong(at));
            case F32, I32 -> out.putInt(src.getInt(at));
            case F16 -> out.putShort(src.getShort(at));
            case I8, U8 -> out.put(src.get(at));
            case BOOL -> out.put(src.get(at) != 0 ? (byte) 1 : (byte) 0); // a bool byte other than 0/1 reads as true
        }
    }

    private static void closeQuietly(ZipFile zip) {
        try {
            zip.close();
        } catch (IOException ignored) {
            // reporting the original failure
        }
    }

    /**
     * Closes the file. Arrays already loaded stay valid.
     *
     * @throws UncheckedIOException if closing fails
     */
    @Override
    public void close() {
        try {
            zip.close();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot close " + file + ": " + e.getMessage(), e);
        }
    }

    @Override
    public String toString() {
        return "TorchBinFile[" + file + ", " + tensors.size() + " tensors]";
    }
}
