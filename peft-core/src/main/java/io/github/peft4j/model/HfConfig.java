package io.github.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A Hugging Face {@code config.json}, read with Jackson, with typed accessors whose errors name the file and
 * the key. The whole JSON tree is kept so that a saved model writes back every field it was loaded with.
 */
public final class HfConfig {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final ObjectNode root;
    private final String source;

    /**
     * Wraps a parsed config.
     *
     * @param root the JSON object
     * @param source where it came from, for error messages
     */
    public HfConfig(ObjectNode root, String source) {
        this.root = root;
        this.source = source;
    }

    /**
     * Reads {@code dir/config.json}.
     *
     * @param dir a model directory
     * @return the config
     */
    public static HfConfig read(Path dir) {
        Path file = dir.resolve("config.json");
        if (!Files.isRegularFile(file)) {
            throw new PeftException(dir + ": not a Hugging Face model directory (no config.json)");
        }
        try {
            JsonNode node = JSON.readTree(io.github.peft4j.io.SizeLimits.check(file, io.github.peft4j.io.SizeLimits.CONFIG_JSON).toFile());
            if (!(node instanceof ObjectNode)) {
                throw new PeftException(file + ": expected a JSON object");
            }
            return new HfConfig((ObjectNode) node, file.toString());
        } catch (IOException e) {
            throw new PeftException(file + ": malformed JSON: " + e.getMessage(), e);
        }
    }

    /** @return the JSON tree (mutable; used when saving) */
    public ObjectNode json() {
        return root;
    }

    /** @return where this config came from */
    public String source() {
        return source;
    }

    /** @return {@code model_type} */
    public String modelType() {
        return string("model_type");
    }

    /**
     * @param key a key
     * @return whether it is present and not null
     */
    public boolean has(String key) {
        return root.hasNonNull(key);
    }

    private JsonNode required(String key) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            throw new PeftException(source + ": missing key '" + key + "'");
        }
        return n;
    }

    /**
     * @param key a key
     * @return its integer value
     */
    public int integer(String key) {
        JsonNode n = required(key);
        if (!n.canConvertToInt() || !n.isIntegralNumber()) {
            throw new PeftException(source + ": key '" + key + "' must be an integer, found " + n);
        }
        return n.intValue();
    }

    /**
     * @param key a key
     * @param def value if absent or null
     * @return its integer value
     */
    public int integer(String key, int def) {
        return has(key) ? integer(key) : def;
    }

    /**
     * @param key a key
     * @param def value if absent or null
     * @return its numeric value
     */
    public double number(String key, double def) {
        if (!has(key)) {
            return def;
        }
        JsonNode n = root.get(key);
        if (!n.isNumber()) {
            throw new PeftException(source + ": key '" + key + "' must be a number, found " + n);
        }
        return n.doubleValue();
    }

    /**
     * @param key a key
     * @return its string value
     */
    public String string(String key) {
        JsonNode n = required(key);
        if (!n.isTextual()) {
            throw new PeftException(source + ": key '" + key + "' must be a string, found " + n);
        }
        return n.textValue();
    }

    /**
     * @param key a key
     * @param def value if absent or null
     * @return its string value
     */
    public String string(String key, String def) {
        return has(key) ? string(key) : def;
    }

    /**
     * @param key a key
     * @param def value if absent or null
     * @return its boolean value
     */
    public boolean bool(String key, boolean def) {
        if (!has(key)) {
            return def;
        }
        JsonNode n = root.get(key);
        if (!n.isBoolean()) {
            throw new PeftException(source + ": key '" + key + "' must be true or false, found " + n);
        }
        return n.booleanValue();
    }

    /** @return the {@code architectures} list (empty if absent) */
    public List<String> architectures() {
        List<String> out = new ArrayList<>();
        JsonNode n = root.get("architectures");
        if (n != null && n.isArray()) {
            n.forEach(a -> out.add(a.asText()));
        }
        return out;
    }

    /**
     * The number of labels of a classification head: {@code num_labels}, else the size of {@code id2label}, else 2.
     *
     * @return the label count
     */
    public int numLabels() {
        if (has("num_labels")) {
            return integer("num_labels");
        }
        JsonNode n = root.get("id2label");
        return n != null && n.isObject() && n.size() > 0 ? n.size() : 2;
    }

    /**
     * Fails with a message naming the key unless a condition holds.
     *
     * @param ok the condition
     * @param key the config key
     * @param expected what was expected
     */
    public void check(boolean ok, String key, String expected) {
        if (!ok) {
            throw new PeftException(source + ": key '" + key + "' = " + root.get(key) + ", expected " + expected);
        }
    }
}
