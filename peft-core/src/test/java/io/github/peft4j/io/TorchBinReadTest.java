package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Real torch.save files (made by make_torch_bin_fixtures.py with torch 2.13) load with torch's dtypes, shapes,
 * strides, storage offsets and exact values; strided views and shared storages give their logical contents.
 */
class TorchBinReadTest {
    static final Path ROOT = Fixtures.root().resolveSibling("torch-bin");
    static final Path VALID = ROOT.resolve("valid");

    @TempDir
    Path tmp;

    static JsonNode expected() throws IOException {
        return new ObjectMapper().readTree(VALID.resolve("expected.json").toFile());
    }

    @ParameterizedTest
    @ValueSource(strings = {"dtypes.bin", "views.bin", "param.bin", "linear.bin"})
    void realTorchSaveFilesLoadExactly(String fileName) throws IOException {
        JsonNode want = expected().get(fileName);
        assertTrue(want != null && want.size() > 0, "expected.json lists " + fileName);
        try (NDManager m = NDManager.newBaseManager(); TorchBinFile f = TorchBinFile.open(VALID.resolve(fileName))) {
            List<String> keys = new ArrayList<>();
            want.fieldNames().forEachRemaining(keys::add);
            assertEquals(keys.stream().sorted().toList(), f.names().stream().sorted().toList());
            int checked = 0;
            for (String name : f.names()) {
                JsonNode w = want.get(name);
                TorchTensorInfo info = f.info(name);
                assertEquals(TensorDType.valueOf(w.get("dtype").asText()), info.dtype(), name);
                assertArrayEquals(longs(w.get("shape")), info.shape(), name + " shape");
                assertArrayEquals(longs(w.get("stride")), info.stride(), name + " stride");
                assertEquals(w.get("offset").asLong(), info.storageOffset(), name + " offset");
                NDArray whole = f.load(name, m);
                assertEquals(info.dtype().memoryType(), whole.getDataType(), name);
                assertEquals(info.djlShape(), whole.getShape(), name);
                assertValues(w.get("values"), whole, fileName + " " + name);
                // one element per chunk: the chunked contiguous and strided paths give the same values
                NDArray chunked = f.load(name, m, null, 1);
                assertValues(w.get("values"), chunked, fileName + " " + name + " (chunked)");
                checked++;
            }
            System.out.printf("torch-bin %s: %d tensors equal to torch's values%n", fileName, checked);
            assertEquals(keys.size(), checked);
        }
    }

    @Test
    void stridedViewsAndSharedStoragesAreReadAsTorchSeesThem() {
        try (NDManager m = NDManager.newBaseManager(); TorchBinFile f = TorchBinFile.open(VALID.resolve("views.bin"))) {
            // every view of the 3x4 arange shares the base's storage record
            for (String n : List.of("transposed", "column", "block", "row", "every_other")) {
                assertEquals(f.info("base").storageKey(), f.info(n).storageKey(), n);
            }
            assertEquals(f.info("shared_a").storageKey(), f.info("shared_b").storageKey());
            assertNotEquals(f.info("base").storageKey(), f.info("shared_a").storageKey());
            assertFalse(f.info("transposed").isContiguous());
            assertTrue(f.info("row").isContiguous());
            assertArrayEquals(new long[] {0, 1}, f.info("expanded").stride());
            assertArrayEquals(new float[] {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}, f.load("transposed", m).toFloatArray());
            assertArrayEquals(new float[] {6, 7, 10, 11}, f.load("block", m).toFloatArray());
            assertArrayEquals(new long[] {0, 1, 2, 0, 1, 2}, f.load("expanded", m).toLongArray());
            assertEquals(DataType.FLOAT16, f.load("shared_b", m).getDataType());
        }
    }

    @Test
    void parametersStateDictsAndArchivePrefixes() {
        try (NDManager m = NDManager.newBaseManager();
                TorchBinFile params = TorchBinFile.open(VALID.resolve("param.bin"));
                TorchBinFile linear = TorchBinFile.open(VALID.resolve("linear.bin"))) {
            assertEquals(List.of("weight", "frozen"), params.names()); // nn.Parameter, incl. requires_grad=False
            assertEquals(TensorDType.BF16, params.info("frozen").dtype());
            assertEquals(DataType.FLOAT32, params.load("frozen", m).getDataType()); // widened, never BFLOAT16
            assertEquals(List.of("weight", "bias"), linear.names()); // OrderedDict with _metadata, prefix 'linear/'
            assertEquals(new Shape(2, 3), linear.load("weight", m).getShape());
        }
    }

    @Test
    void floatTargetsConvertFloatsAndLeaveIntegersAlone() {
        try (NDManager m = NDManager.newBaseManager(); TorchBinFile f = TorchBinFile.open(VALID.resolve("dtypes.bin"))) {
            NDArray f32 = f.load("f32", m);
            NDArray half = f.load("f32", m, DataType.FLOAT16);
            assertEquals(DataType.FLOAT16, half.getDataType());
            assertArrayEquals(f32.toType(DataType.FLOAT16, false).toType(DataType.FLOAT32, false).toFloatArray(),
                    half.toType(DataType.FLOAT32, false).toFloatArray());
            assertEquals(DataType.FLOAT64, f.load("bf16", m, DataType.FLOAT64).getDataType());
            assertEquals(DataType.INT64, f.load("i64", m, DataType.FLOAT16).getDataType());
            assertEquals(DataType.INT32, f.load("i16", m, DataType.FLOAT32).getDataType());
            PeftException e = assertThrows(PeftException.class, () -> f.load("f32", m, DataType.INT32));
            assertTrue(e.getMessage().contains("tensor 'f32' is F32 and can be loaded as FLOAT32, FLOAT16 or FLOAT64, "
                    + "not int32"), e.getMessage());
            e = assertThrows(PeftException.class, () -> f.info("nope"));
            assertTrue(e.getMessage().endsWith("dtypes.bin: no tensor 'nope' (file has 12 tensors)"), e.getMessage());
            Map<String, NDArray> all = f.loadAll(m, null);
            assertEquals(f.names(), List.copyOf(all.keySet()));
            assertEquals(new Shape(), all.get("f64").getShape()); // 0-d
            assertEquals(3.25, all.get("f64").getDouble());
            assertEquals(new Shape(0, 3), all.get("empty").getShape());
        }
    }

    @Test
    void weightFilesPicksTheReaderByName() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> bin = WeightFiles.loadAll(VALID.resolve("linear.bin"), m, null);
            Path st = tmp.resolve("linear.safetensors");
            SafeTensorsWriter.write(st, bin, Map.of("format", "pt"));
            Map<String, NDArray> back = WeightFiles.loadAll(st, m, null);
            assertEquals(new TreeSet<>(bin.keySet()), new TreeSet<>(back.keySet())); // the writer sorts names
            for (String k : bin.keySet()) {
                assertArrayEquals(bin.get(k).toFloatArray(), back.get(k).toFloatArray(), k);
            }
            Path other = Files.copy(VALID.resolve("linear.bin"), tmp.resolve("linear.ckpt"));
            PeftException e = assertThrows(PeftException.class, () -> WeightFiles.loadAll(other, m, null));
            assertTrue(e.getMessage().contains("linear.ckpt: unknown weights file type"), e.getMessage());
        }
    }

    /** A bool storage byte other than 0 or 1 (torch never writes one) reads as true, stored as 1. */
    @Test
    void boolBytesAreNormalised() throws IOException {
        Path src = VALID.resolve("dtypes.bin");
        String record;
        try (TorchBinFile f = TorchBinFile.open(src)) {
            record = "archive/data/" + f.info("bool").storageKey();
        }
        Path patched = tmp.resolve("bools.bin");
        try (ZipFile in = new ZipFile(src.toFile());
                ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(patched))) {
            for (ZipEntry e : Collections.list(in.entries())) {
                byte[] data = in.getInputStream(e).readAllBytes();
                if (e.getName().equals(record)) {
                    data = new byte[] {2, 0, (byte) 0xff, 1}; // torch wrote [True, False, True, True]
                }
                out.putNextEntry(new ZipEntry(e.getName()));
                out.write(data);
                out.closeEntry();
            }
        }
        try (NDManager m = NDManager.newBaseManager(); TorchBinFile f = TorchBinFile.open(patched)) {
            NDArray b = f.load("bool", m);
            assertArrayEquals(new boolean[] {true, false, true, true}, b.toBooleanArray());
            assertArrayEquals(new byte[] {1, 0, 1, 1}, b.toType(DataType.INT8, false).toByteArray());
        }
    }

    private static long[] longs(JsonNode n) {
        long[] out = new long[n.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = n.get(i).asLong();
        }
        return out;
    }

    /** Compares the flat values exactly, in the array's own type (F16/BF16 via the exact float value). */
    static void assertValues(JsonNode values, NDArray a, String what) {
        assertEquals(values.size(), a.size(), what + " size");
        Iterator<JsonNode> it = values.elements();
        switch (a.getDataType()) {
            case FLOAT64 -> {
                for (double v : a.toDoubleArray()) {
                    assertEquals(it.next().asDouble(), v, 0.0, what);
                }
            }
            case FLOAT32, FLOAT16 -> {
                for (float v : a.toType(DataType.FLOAT32, false).toFloatArray()) {
                    assertEquals((float) it.next().asDouble(), v, 0.0f, what);
                }
            }
            case INT64 -> {
                for (long v : a.toLongArray()) {
                    assertEquals(it.next().asLong(), v, what);
                }
            }
            case INT32 -> {
                for (int v : a.toIntArray()) {
                    assertEquals(it.next().asLong(), v, what);
                }
            }
            case INT8 -> {
                for (byte v : a.toByteArray()) {
                    assertEquals(it.next().asLong(), v, what);
                }
            }
            case UINT8 -> {
                for (int v : a.toUint8Array()) {
                    assertEquals(it.next().asLong(), v, what);
                }
            }
            case BOOLEAN -> {
                for (boolean v : a.toBooleanArray()) {
                    assertEquals(it.next().asLong() != 0, v, what);
                }
            }
            default -> throw new AssertionError(what + ": unexpected type " + a.getDataType());
        }
    }
}
