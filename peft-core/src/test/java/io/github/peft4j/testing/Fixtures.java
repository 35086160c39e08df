package io.github.peft4j.testing;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Access to the Hugging Face parity fixtures in {@code peft-core/src/test/resources/fixtures/hf-peft}, for
 * tests of every module (found by walking up from the working directory, so it works from any reactor module).
 */
public final class Fixtures {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Fixtures() {}

    /** @return the fixtures root */
    public static Path root() {
        Path p = Path.of("").toAbsolutePath();
        while (p != null) {
            Path c = p.resolve("peft-core/src/test/resources/fixtures/hf-peft");
            if (Files.isDirectory(c)) {
                return c;
            }
            p = p.getParent();
        }
        throw new IllegalStateException("fixtures not found above " + Path.of("").toAbsolutePath());
    }

    /**
     * @param name a case name, e.g. {@code llama_lora}
     * @return its directory
     */
    public static Path dir(String name) {
        return root().resolve(name);
    }

    /**
     * @param name a case
     * @param file a JSON file in it
     * @return the parsed JSON
     */
    public static JsonNode json(String name, String file) {
        try {
            return JSON.readTree(dir(name).resolve(file).toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * @param manager where to create it
     * @param name a case
     * @param key {@code input_ids}, {@code attention_mask} or another integer matrix in input_ids.json
     * @return the int64 matrix, or null if absent
     */
    public static NDArray ids(NDManager manager, String name, String key) {
        JsonNode n = json(name, "input_ids.json").get(key);
        if (n == null || n.isNull()) {
            return null;
        }
        int rows = n.size();
        int cols = n.get(0).size();
        long[] flat = new long[rows * cols];
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < cols; j++) {
                flat[i * cols + j] = n.get(i).get(j).asLong();
            }
        }
        return manager.create(flat, new Shape(rows, cols));
    }

    /**
     * Reads logits stored by the generator.
     *
     * @param manager where to create them
     * @param name a case
     * @param file {@code logits.json} or {@code merged_logits.json}
     * @param key e.g. {@code adapter_logits}; its shape is under {@code key + "_shape"}
     * @return the fp32 array
     */
    public static NDArray logits(NDManager manager, String name, String file, String key) {
        JsonNode root = json(name, file);
        JsonNode values = root.get(key);
        if (values == null) {
            throw new IllegalArgumentException(name + "/" + file + " has no '" + key + "'; keys: " + fieldNames(root));
        }
        JsonNode shapeNode = root.get(key + "_shape");
        List<Float> flat = new ArrayList<>();
        flatten(values, flat);
        float[] data = new float[flat.size()];
        for (int i = 0; i < data.length; i++) {
            data[i] = flat.get(i);
        }
        long[] shape;
        if (shapeNode != null) {
            shape = new long[shapeNode.size()];
            for (int i = 0; i < shape.length; i++) {
                shape[i] = shapeNode.get(i).asLong();
            }
        } else {
            List<Long> dims = new ArrayList<>();
            JsonNode n = values;
            while (n.isArray()) {
                dims.add((long) n.size());
                n = n.get(0);
            }
            shape = dims.stream().mapToLong(Long::longValue).toArray();
        }
        return manager.create(data, new Shape(shape));
    }

    private static List<String> fieldNames(JsonNode n) {
        List<String> out = new ArrayList<>();
        n.fieldNames().forEachRemaining(out::add);
        return out;
    }

    private static void flatten(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add(n.floatValue());
        }
    }

    /**
     * @param a an array
     * @param b an array of the same shape
     * @return max |a - b| in fp32 on the CPU
     */
    public static double maxAbsDiff(NDArray a, NDArray b) {
        if (!a.getShape().equals(b.getShape())) {
            throw new AssertionError("shape " + a.getShape() + " != expected " + b.getShape());
        }
        NDArray x = a.toDevice(b.getDevice(), false).toType(DataType.FLOAT32, false);
        return x.sub(b.toType(DataType.FLOAT32, false)).abs().max().getFloat();
    }

    /**
     * @param n a JSON list of equal-length lists of integers
     * @return the rows
     */
    public static long[][] matrix(JsonNode n) {
        long[][] out = new long[n.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = new long[n.get(i).size()];
            for (int j = 0; j < out[i].length; j++) {
                out[i][j] = n.get(i).get(j).asLong();
            }
        }
        return out;
    }

    /**
     * Asserts that every key of a peft4j-written {@code adapter_config.json} has HF's value, except
     * {@code base_model_name_or_path}: HF's fixtures hold null there, while peft4j records the base's directory (as
     * HF's own {@code save_pretrained} records the base's {@code name_or_path}).
     *
     * @param hf HF's config
     * @param ours peft4j's config
     * @param what the case, for messages
     */
    public static void assertConfigKeysAsHf(JsonNode hf, JsonNode ours, String what) {
        ours.fieldNames().forEachRemaining(k -> {
            if (!k.equals("base_model_name_or_path")) {
                org.junit.jupiter.api.Assertions.assertEquals(hf.get(k), ours.get(k), what + " adapter_config " + k);
            }
        });
    }
}
