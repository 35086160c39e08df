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
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {
    @TempDir
    Path dir;

    /** Six tensors of 24 bytes (F32 [2,3]) plus a 16-byte I64 [2]: 160 bytes in all. */
    private static Map<String, NDArray> tensors(NDManager m) {
        Map<String, NDArray> t = new TreeMap<>();
        for (int i = 0; i < 6; i++) {
            t.put("layer." + i + ".weight", m.randomNormal(new Shape(2, 3)));
        }
        t.put("position_ids", m.create(new long[] {0, 1}));
        return t;
    }

    @Test
    void shardedCheckpointRoundTrips() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> in = tensors(m);
            SafeTensorsWriter.writeSharded(dir, in, Map.of("format", "pt"), 64); // [0,1] [2,3] [4,5,position_ids]
            assertEquals(List.of("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                    "model-00003-of-00003.safetensors", "model.safetensors.index.json"), TestFiles.list(dir));

            String index = Files.readString(dir.resolve("model.safetensors.index.json"));
            assertTrue(index.startsWith("{\n  \"metadata\": {\n    \"total_size\": 160\n  },\n  \"weight_map\": {\n"
                    + "    \"layer.0.weight\": \"model-00001-of-00003.safetensors\",\n"), index);
            assertTrue(index.endsWith("    \"position_ids\": \"model-00003-of-00003.safetensors\"\n  }\n}\n"), index);

            try (Checkpoint cp = Checkpoint.open(dir)) {
                assertEquals(new TreeSet<>(in.keySet()), cp.names());
                assertTrue(cp.contains("layer.5.weight"));
                assertFalse(cp.contains("missing"));
                assertEquals(TensorDType.I64, cp.info("position_ids").dtype());
                for (Map.Entry<String, NDArray> e : in.entrySet()) {
                    NDArray loaded = cp.load(e.getKey(), m, DataType.FLOAT32);
                    assertEquals(e.getValue().getShape(), loaded.getShape());
                    assertEquals(e.getValue().getDataType(), loaded.getDataType());
                    assertArrayEquals(e.getValue().toByteArray(), loaded.toByteArray(), e.getKey());
                }
                PeftException e = assertThrows(PeftException.class, () -> cp.load("missing", m, null));
                assertTrue(e.getMessage().contains("'missing'") && e.getMessage().contains(dir.toString()));
            }
            try (SafeTensorsFile shard = SafeTensorsFile.open(dir.resolve("model-00002-of-00003.safetensors"))) {
                assertEquals(Map.of("format", "pt"), shard.metadata());
                assertEquals(List.of("layer.2.weight", "layer.3.weight"), shard.names());
            }
        }
    }

    @Test
    void smallCheckpointIsOneFileAndReplacesStaleIndex() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> in = tensors(m);
            SafeTensorsWriter.writeSharded(dir, in, null, 64);
            SafeTensorsWriter.writeSharded(dir, Map.of("only", m.create(new float[] {7f})), null, 1000);
            assertFalse(Files.exists(dir.resolve("model.safetensors.index.json")));
            assertTrue(Files.exists(dir.resolve("model.safetensors")));
            try (Checkpoint cp = Checkpoint.open(dir)) {
                assertEquals(new TreeSet<>(List.of("only")), cp.names());
                assertArrayEquals(new float[] {7f}, cp.load("only", m, null).toFloatArray());
            }
        }
    }

    @Test
    void resavingWithFewerShardsReplacesTheIndex() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.writeSharded(dir, tensors(m), null, 64);
            Map<String, NDArray> two = Map.of("x", m.create(new float[] {1, 2, 3, 4}), "y", m.create(new int[] {5}));
            SafeTensorsWriter.writeSharded(dir, two, null, 16);
            try (Checkpoint cp = Checkpoint.open(dir)) {
                assertEquals(new TreeSet<>(List.of("x", "y")), cp.names());
                assertArrayEquals(new float[] {1, 2, 3, 4}, cp.load("x", m, null).toFloatArray());
                assertArrayEquals(new int[] {5}, cp.load("y", m, DataType.FLOAT16).toIntArray());
            }
            assertTrue(Files.readString(dir.resolve("model.safetensors.index.json"))
                    .contains("\"y\": \"model-00002-of-00002.safetensors\""));
        }
    }

    @Test
    void missingShardIsNamed() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.writeSharded(dir, tensors(m), null, 64);
        }
        Files.delete(dir.resolve("model-00002-of-00003.safetensors"));
        PeftException e = assertThrows(PeftException.class, () -> Checkpoint.open(dir).close());
        assertTrue(e.getMessage().startsWith(dir.resolve("model.safetensors.index.json") + ":"), e.getMessage());
        assertTrue(e.getMessage().contains("shard 'model-00002-of-00003.safetensors'"), e.getMessage());
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void indexNamingATensorNotInItsShardIsRejected() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.writeSharded(dir, tensors(m), null, 64);
        }
        Path index = dir.resolve("model.safetensors.index.json");
        String text = Files.readString(index).replace("\"position_ids\": \"model-00003-of-00003.safetensors\"",
                "\"position_ids\": \"model-00001-of-00003.safetensors\"");
        Files.writeString(index, text);
        PeftException e = assertThrows(PeftException.class, () -> Checkpoint.open(dir).close());
        assertTrue(e.getMessage().contains("tensor 'position_ids'"), e.getMessage());
        assertTrue(e.getMessage().contains("model-00001-of-00003.safetensors"), e.getMessage());
        assertTrue(e.getMessage().contains("has no such tensor"), e.getMessage());
    }

    @Test
    void shardOutsideTheDirectoryIsRejected() throws IOException {
        Files.writeString(dir.resolve("model.safetensors.index.json"),
                "{\"weight_map\": {\"w\": \"../elsewhere.safetensors\"}}", StandardCharsets.UTF_8);
        PeftException e = assertThrows(PeftException.class, () -> Checkpoint.open(dir).close());
        assertTrue(e.getMessage().contains("must be a file name in"), e.getMessage());
    }

    @Test
    void emptyDirectoryIsRejected() {
        PeftException e = assertThrows(PeftException.class, () -> Checkpoint.open(dir).close());
        assertEquals(dir + ": no model.safetensors or model.safetensors.index.json", e.getMessage());
    }
}
