package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafeTensorsRoundTripTest {
    @TempDir
    Path dir;

    @Test
    void float32AndFloat16RoundTripExactly() {
        Path file = dir.resolve("f.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray a = m.randomNormal(new Shape(3, 5));
            NDArray h = m.randomNormal(new Shape(2, 2, 3)).toType(DataType.FLOAT16, false);
            SafeTensorsWriter.write(file, Map.of("a.weight", a, "h.weight", h), Map.of("format", "pt"));

            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                assertEquals(Map.of("format", "pt"), st.metadata());
                assertEquals(List.of("a.weight", "h.weight"), st.names());
                assertEquals(TensorDType.F32, st.info("a.weight").dtype());
                assertEquals(TensorDType.F16, st.info("h.weight").dtype());
                assertArrayEquals(new long[] {3, 5}, st.info("a.weight").shape());

                NDArray a2 = st.load("a.weight", m);
                assertEquals(DataType.FLOAT32, a2.getDataType());
                assertEquals(new Shape(3, 5), a2.getShape());
                assertArrayEquals(a.toFloatArray(), a2.toFloatArray());
                assertEquals("a.weight", a2.getName());

                NDArray h2 = st.load("h.weight", m);
                assertEquals(DataType.FLOAT16, h2.getDataType());
                assertEquals(new Shape(2, 2, 3), h2.getShape());
                assertArrayEquals(bytes(h), bytes(h2));
                assertArrayEquals(h.toType(DataType.FLOAT32, false).toFloatArray(),
                        h2.toType(DataType.FLOAT32, false).toFloatArray());

                NDArray widened = st.load("h.weight", m, DataType.FLOAT32);
                assertEquals(DataType.FLOAT32, widened.getDataType());
                assertArrayEquals(h.toType(DataType.FLOAT32, false).toFloatArray(), widened.toFloatArray());
            }
        }
    }

    @Test
    void integerFloat64AndBoolRoundTrip() {
        Path file = dir.resolve("i.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> in = new LinkedHashMap<>();
            in.put("i64", m.create(new long[] {Long.MIN_VALUE, -1, 0, 7, Long.MAX_VALUE, 42}, new Shape(2, 3)));
            in.put("i32", m.create(new int[] {Integer.MIN_VALUE, -5, 0, Integer.MAX_VALUE}));
            in.put("i8", m.create(new byte[] {-128, -1, 0, 127}));
            in.put("u8", m.create(new byte[] {0, 1, (byte) 200, (byte) 255}).toType(DataType.UINT8, false));
            in.put("f64", m.create(new double[] {Math.PI, -1e300, 0.1}));
            in.put("bool", m.create(new boolean[] {true, false, true}));
            SafeTensorsWriter.write(file, in, null);

            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                assertTrue(st.metadata().isEmpty());
                NDArray i64 = st.load("i64", m, DataType.FLOAT16); // target ignored for integers
                assertEquals(DataType.INT64, i64.getDataType());
                assertEquals(new Shape(2, 3), i64.getShape());
                assertArrayEquals(new long[] {Long.MIN_VALUE, -1, 0, 7, Long.MAX_VALUE, 42}, i64.toLongArray());
                NDArray i32 = st.load("i32", m);
                assertEquals(DataType.INT32, i32.getDataType());
                assertArrayEquals(new int[] {Integer.MIN_VALUE, -5, 0, Integer.MAX_VALUE}, i32.toIntArray());
                assertEquals(TensorDType.I8, st.info("i8").dtype());
                assertArrayEquals(new byte[] {-128, -1, 0, 127}, st.load("i8", m).toByteArray());
                NDArray u8 = st.load("u8", m);
                assertEquals(DataType.UINT8, u8.getDataType());
                assertArrayEquals(new byte[] {0, 1, (byte) 200, (byte) 255}, u8.toByteArray());
                NDArray f64 = st.load("f64", m);
                assertEquals(DataType.FLOAT64, f64.getDataType());
                assertArrayEquals(new double[] {Math.PI, -1e300, 0.1}, f64.toDoubleArray());
                NDArray b = st.load("bool", m);
                assertEquals(DataType.BOOLEAN, b.getDataType());
                assertArrayEquals(new boolean[] {true, false, true}, b.toBooleanArray());
            }
        }
    }

    @Test
    void scalarAndZeroSizeTensors() {
        Path file = dir.resolve("s.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray scalar = m.create(2.5f);
            NDArray empty = m.zeros(new Shape(0, 4));
            assertEquals(new Shape(), scalar.getShape());
            SafeTensorsWriter.write(file, Map.of("scalar", scalar, "empty", empty), Map.of());

            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                assertArrayEquals(new long[0], st.info("scalar").shape());
                assertEquals(1, st.info("scalar").numel());
                assertEquals(4, st.info("scalar").byteLength());
                assertArrayEquals(new long[] {0, 4}, st.info("empty").shape());
                assertEquals(0, st.info("empty").byteLength());

                NDArray s2 = st.load("scalar", m);
                assertEquals(new Shape(), s2.getShape());
                assertEquals(2.5f, s2.getFloat());
                NDArray e2 = st.load("empty", m);
                assertEquals(new Shape(0, 4), e2.getShape());
                assertEquals(DataType.FLOAT32, e2.getDataType());
                assertEquals(0, e2.size());
            }
        }
    }

    @Test
    void headerIsAlignedAndLaidOutInSortedOrder() throws IOException {
        Path file = dir.resolve("h.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            // one-name tensors of varying sizes make several header lengths; each must be padded
            for (int len = 1; len <= 9; len++) {
                SafeTensorsWriter.write(file, Map.of("x".repeat(len), m.ones(new Shape(len)),
                        "a", m.create(new int[] {1, 2})), Map.of("format", "pt"));
                byte[] raw = Files.readAllBytes(file);
                long n = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
                assertEquals(0, (8 + n) % 8, "8 + header length must be a multiple of 8");
                String header = new String(raw, 8, (int) n, StandardCharsets.UTF_8);
                assertTrue(header.startsWith("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"I32\","
                        + "\"shape\":[2],\"data_offsets\":[0,8]},"), header);
                assertEquals(header.strip(), header.substring(0, header.lastIndexOf('}') + 1));
                assertEquals(8 + n + 8 + 4L * len, raw.length);
                // data: the I32 tensor "a" first (sorted names), then the floats
                ByteBuffer data = ByteBuffer.wrap(raw, (int) (8 + n), raw.length - (int) (8 + n))
                        .order(ByteOrder.LITTLE_ENDIAN);
                assertEquals(1, data.getInt());
                assertEquals(2, data.getInt());
                assertEquals(1.0f, data.getFloat());
            }
        }
    }

    @Test
    void nonContiguousArrayIsWrittenInLogicalOrder() {
        Path file = dir.resolve("t.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray t = m.arange(6f).reshape(2, 3).transpose();
            SafeTensorsWriter.write(file, Map.of("t", t), null);
            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                NDArray t2 = st.load("t", m);
                assertEquals(new Shape(3, 2), t2.getShape());
                assertArrayEquals(new float[] {0, 3, 1, 4, 2, 5}, t2.toFloatArray());
            }
        }
    }

    @Test
    void chunkedLoadAndWriteMatchSinglePass() {
        Path single = dir.resolve("single.safetensors");
        Path chunked = dir.resolve("chunked.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray a = m.randomNormal(new Shape(5, 7));
            NDArray h = m.randomNormal(new Shape(11)).toType(DataType.FLOAT16, false);
            SafeTensorsWriter.write(single, Map.of("a", a, "h", h), null);
            SafeTensorsWriter.write(chunked, Map.of("a", a, "h", h), null, 12); // 3 floats / 6 halves a slice
            assertArrayEquals(readBytes(single), readBytes(chunked));

            try (SafeTensorsFile st = SafeTensorsFile.open(chunked)) {
                NDArray a2 = st.load("a", m, null, 12); // 3 elements per mapping, 12 chunks
                assertEquals(new Shape(5, 7), a2.getShape());
                assertArrayEquals(a.toFloatArray(), a2.toFloatArray());
                NDArray h2 = st.load("h", m, DataType.FLOAT32, 8);
                assertArrayEquals(h.toType(DataType.FLOAT32, false).toFloatArray(), h2.toFloatArray());
            }
        }
    }

    @Test
    void loadedArraysOutliveTheFileAndLoadAllWorks() {
        Path file = dir.resolve("l.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray a = m.arange(4f);
            NDArray b = m.arange(3f).toType(DataType.FLOAT16, false);
            SafeTensorsWriter.write(file, Map.of("a", a, "b", b), null);
            Map<String, NDArray> all;
            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                all = st.loadAll(m, DataType.FLOAT64);
                if (io.github.peft4j.nn.FusedOps.bf16Supported()) { // BF16 engine (scripts/with-torch.sh): a BF16 target is allowed
                    assertEquals(DataType.BFLOAT16, st.load("a", m, DataType.BFLOAT16).getDataType());
                } else {
                    assertThrows(PeftException.class, () -> st.load("a", m, DataType.BFLOAT16));
                }
                assertThrows(PeftException.class, () -> st.load("a", m, DataType.INT32));
            }
            System.gc(); // mappings may be released; loaded arrays own their memory
            assertEquals(List.of("a", "b"), List.copyOf(all.keySet()));
            assertEquals(DataType.FLOAT64, all.get("a").getDataType());
            assertArrayEquals(new double[] {0, 1, 2, 3}, all.get("a").toDoubleArray());
            assertArrayEquals(new double[] {0, 1, 2}, all.get("b").toDoubleArray());
        }
    }

    @Test
    void missingTensorIsNamed() {
        Path file = dir.resolve("m.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.write(file, Map.of("a", m.ones(new Shape(1))), null);
            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                assertFalse(st.contains("b"));
                assertTrue(st.contains("a"));
                PeftException e = assertThrows(PeftException.class, () -> st.info("b"));
                assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains(file.toString()),
                        e.getMessage());
            }
        }
    }

    @Test
    void int16IsWidenedToInt32AndWrittenBackAsI32() throws IOException {
        ByteBuffer data = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        data.putShort((short) -32768).putShort((short) -1).putShort((short) 1).putShort((short) 32767);
        Path file = TestFiles.craft(dir.resolve("i16.safetensors"),
                "{\"s\":{\"dtype\":\"I16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", data.array());
        Path copy = dir.resolve("i16copy.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                assertEquals(TensorDType.I16, st.info("s").dtype());
                NDArray s = st.load("s", m);
                assertEquals(DataType.INT32, s.getDataType());
                assertEquals(new Shape(2, 2), s.getShape());
                assertArrayEquals(new int[] {-32768, -1, 1, 32767}, s.toIntArray());
                assertArrayEquals(new int[] {-32768, -1, 1, 32767}, st.load("s", m, null, 4).toIntArray());
                SafeTensorsWriter.write(copy, Map.of("s", s), null);
            }
            try (SafeTensorsFile st = SafeTensorsFile.open(copy)) {
                assertEquals(TensorDType.I32, st.info("s").dtype());
                assertArrayEquals(new int[] {-32768, -1, 1, 32767}, st.load("s", m).toIntArray());
            }
        }
    }

    @Test
    void loadedArrayDoesNotAliasTheMappedFile() throws IOException {
        Path file = dir.resolve("alias.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.write(file, Map.of("a", m.create(new float[] {1f, 2f})), null);
            try (SafeTensorsFile st = SafeTensorsFile.open(file)) {
                NDArray a = st.load("a", m);
                // overwrite the data in place; a mapping of the file would see the change
                byte[] raw = Files.readAllBytes(file);
                byte[] nine = TestFiles.floats(9f, 9f);
                System.arraycopy(nine, 0, raw, raw.length - 8, 8);
                try (var ch = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.WRITE)) {
                    ch.write(ByteBuffer.wrap(raw));
                }
                assertArrayEquals(new float[] {1f, 2f}, a.toFloatArray());
                assertArrayEquals(new float[] {9f, 9f}, st.load("a", m).toFloatArray());
            }
        }
    }

    /** Documents the DJL behaviour this package works around: create(directBuffer) shares the buffer. */
    @Test
    void djlCreateFromDirectBufferAliasesJavaMemory() {
        try (NDManager m = NDManager.newBaseManager()) {
            ByteBuffer buf = ByteBuffer.allocateDirect(8).order(ByteOrder.nativeOrder());
            buf.putFloat(0, 1f).putFloat(4, 2f);
            try (NDArray view = m.create(buf, new Shape(2), DataType.FLOAT32);
                    NDArray copy = view.duplicate()) {
                buf.putFloat(0, 5f);
                assertArrayEquals(new float[] {5f, 2f}, view.toFloatArray());
                assertArrayEquals(new float[] {1f, 2f}, copy.toFloatArray());
            }
        }
    }

    private static byte[] bytes(NDArray a) {
        ByteBuffer b = a.toByteBuffer();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    private static byte[] readBytes(Path p) {
        try {
            return Files.readAllBytes(p);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }
}
