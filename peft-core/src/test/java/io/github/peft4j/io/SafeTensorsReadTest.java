package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
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
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading hand-crafted files: BF16 widening and rejection of corrupt headers. */
class SafeTensorsReadTest {
    @TempDir
    Path dir;

    @Test
    void bf16IsWidenedToFloat32Exactly() throws IOException {
        // bf16 bit patterns: 1.0 = 0x3F80, -2.5 = 0xC020, 3.140625 = 0x4049, 0 = 0x0000, -inf = 0xFF80, 32768 = 0x4700
        short[] bits = {0x3F80, (short) 0xC020, 0x4049, 0x0000, (short) 0xFF80, 0x4700};
        ByteBuffer data = ByteBuffer.allocate(bits.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        for (short b : bits) {
            data.putShort(b);
        }
        Path file = TestFiles.craft(dir.resolve("bf16.safetensors"),
                "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],"
                        + "\"data_offsets\":[0,12]}}",
                data.array());
        try (NDManager m = NDManager.newBaseManager(); SafeTensorsFile st = SafeTensorsFile.open(file)) {
            assertEquals(TensorDType.BF16, st.info("w").dtype());
            assertEquals(Map.of("format", "pt"), st.metadata());
            float[] expected = {1.0f, -2.5f, 3.140625f, 0f, Float.NEGATIVE_INFINITY, 32768f};
            NDArray w = st.load("w", m);
            assertEquals(DataType.FLOAT32, w.getDataType());
            assertEquals(new Shape(2, 3), w.getShape());
            assertArrayEquals(expected, w.toFloatArray());
            NDArray chunked = st.load("w", m, DataType.FLOAT32, 8); // two elements per chunk
            assertArrayEquals(expected, chunked.toFloatArray());
            NDArray half = st.load("w", m, DataType.FLOAT16);
            assertEquals(DataType.FLOAT16, half.getDataType());
            assertArrayEquals(new float[] {1.0f, -2.5f, 3.140625f, 0f, Float.NEGATIVE_INFINITY, 32768f},
                    half.toType(DataType.FLOAT32, false).toFloatArray());
        }
    }

    @Test
    void headerLengthLargerThanFileIsRejected() throws IOException {
        Path file = TestFiles.craftRaw(dir.resolve("long.safetensors"), 1000, "{}".getBytes(StandardCharsets.UTF_8),
                new byte[0]);
        assertRejected(file, null, "header length is 1000");
    }

    @Test
    void headerLengthZeroIsRejected() throws IOException {
        Path file = TestFiles.craftRaw(dir.resolve("zero.safetensors"), 0, new byte[0], new byte[16]);
        assertRejected(file, null, "header length is 0");
    }

    @Test
    void hugeOrNegativeHeaderLengthIsRejected() throws IOException {
        Path file = TestFiles.craftRaw(dir.resolve("neg.safetensors"), -8, new byte[0], new byte[16]);
        assertRejected(file, null, "header length is -8");
        Path huge = TestFiles.craftRaw(dir.resolve("huge.safetensors"), 200L << 20, new byte[0], new byte[16]);
        assertRejected(huge, null, "header length is " + (200L << 20));
    }

    @Test
    void tinyFileIsRejected() throws IOException {
        Path file = dir.resolve("tiny.safetensors");
        Files.write(file, new byte[] {1, 2, 3});
        assertRejected(file, null, "too short");
    }

    @Test
    void headerThatIsNotJsonIsRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("nojson.safetensors"), "{\"a\": [1, 2", new byte[0]);
        assertRejected(file, null, "not valid JSON");
        Path array = TestFiles.craft(dir.resolve("array.safetensors"), "[1, 2]", new byte[0]);
        assertRejected(array, null, "must be a JSON object");
    }

    @Test
    void duplicateTensorNamesAreRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("dup.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        + "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                TestFiles.floats(1, 2));
        assertRejected(file, null, "Duplicate");
    }

    @Test
    void unknownDtypeIsRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("dtype.safetensors"),
                "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", new byte[4]);
        assertRejected(file, "w", "unsupported dtype 'F8_E4M3'");
        Path other = TestFiles.craft(dir.resolve("dtype2.safetensors"),
                "{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,4]}}", new byte[4]);
        assertRejected(other, "w", "unsupported dtype 'Q4'");
    }

    @Test
    void dataOffsetsPastEndAreRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("past.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", TestFiles.floats(1, 2));
        assertRejected(file, "w", "data_offsets [4, 12] but the data section is [0, 8] bytes");
        Path reversed = TestFiles.craft(dir.resolve("rev.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", TestFiles.floats(1, 2));
        assertRejected(reversed, "w", "data_offsets [8, 4]");
    }

    @Test
    void byteLengthNotMatchingShapeIsRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("len.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", TestFiles.floats(1, 2));
        assertRejected(file, "w",
                "has data_offsets [0, 8] (8 bytes) but shape [3] with dtype F32 needs 12 bytes");
    }

    @Test
    void overlappingTensorsAreRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("overlap.safetensors"),
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                TestFiles.floats(1, 2, 3));
        assertRejected(file, "b", "overlap tensor 'a'");
    }

    @Test
    void negativeOrFractionalShapeIsRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("neg.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", TestFiles.floats(1, 2));
        assertRejected(file, "w", "'shape' to be an array of non-negative integers, found [-1,2]");
        Path frac = TestFiles.craft(dir.resolve("frac.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", TestFiles.floats(1, 2));
        assertRejected(frac, "w", "'shape'");
        Path offsets = TestFiles.craft(dir.resolve("offs.safetensors"),
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", TestFiles.floats(1, 2));
        assertRejected(offsets, "w", "'data_offsets' to be an array of 2 non-negative integers");
    }

    @Test
    void badMetadataIsRejected() throws IOException {
        Path file = TestFiles.craft(dir.resolve("meta.safetensors"),
                "{\"__metadata__\":{\"format\":1},\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                TestFiles.floats(1));
        assertRejected(file, null, "__metadata__ value for 'format' must be a string");
    }

    @Test
    void truncatedFileIsRejected() throws IOException {
        Path good = dir.resolve("good.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.write(good, Map.of("a", m.ones(new Shape(4)), "b", m.ones(new Shape(4))), null);
        }
        byte[] raw = Files.readAllBytes(good);
        Path cut = dir.resolve("cut.safetensors");
        Files.write(cut, Arrays.copyOf(raw, raw.length - 3));
        assertRejected(cut, "b", "(file truncated?)");
        Path cutHeader = dir.resolve("cutheader.safetensors");
        Files.write(cutHeader, Arrays.copyOf(raw, 20));
        assertRejected(cutHeader, null, "truncated");
    }

    private static void assertRejected(Path file, String tensor, String expectedFragment) {
        PeftException e = assertThrows(PeftException.class, () -> SafeTensorsFile.open(file).close());
        String msg = e.getMessage();
        assertTrue(msg.startsWith(file.toString() + ":"), "message should name the file: " + msg);
        if (tensor != null) {
            assertTrue(msg.contains("tensor '" + tensor + "'"), "message should name the tensor: " + msg);
        }
        assertTrue(msg.contains(expectedFragment), "expected '" + expectedFragment + "' in: " + msg);
    }
}
