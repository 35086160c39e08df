package io.github.peft4j.peft;

import com.fasterxml.jackson.annotation.JsonAutoDetect;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.PropertyAccessor;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.jsontype.NamedType;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.TreeMap;

/**
 * The registry of methods found with {@link ServiceLoader}, and the Jackson mapper that reads and writes
 * {@code adapter_config.json} as HF PEFT does: snake_case keys, polymorphic on {@code peft_type}, unknown
 * keys ignored, keys sorted, nulls written, two-space indentation.
 */
public final class PeftMethods {
    private static final Map<String, PeftMethod> METHODS = java.util.Collections.synchronizedMap(new TreeMap<>());
    private static final ObjectMapper MAPPER;

    static {
        for (PeftMethod m : ServiceLoader.load(PeftMethod.class, PeftMethods.class.getClassLoader())) {
            METHODS.put(m.peftType(), m);
        }
        JsonMapper mapper = JsonMapper.builder()
                .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
                .visibility(PropertyAccessor.ALL, JsonAutoDetect.Visibility.NONE)
                .visibility(PropertyAccessor.FIELD, JsonAutoDetect.Visibility.ANY)
                .configure(MapperFeature.SORT_PROPERTIES_ALPHABETICALLY, true)
                .configure(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS, true)
                .configure(SerializationFeature.INDENT_OUTPUT, true)
                .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
                .serializationInclusion(JsonInclude.Include.ALWAYS)
                .build();
        METHODS.values().forEach(m -> mapper.registerSubtypes(new NamedType(m.configType(), m.peftType())));
        MAPPER = mapper;
    }

    private PeftMethods() {}

    /**
     * Registers a method in code (besides those {@link ServiceLoader} finds): for methods defined in an
     * application or a test. A later registration of the same {@code peft_type} replaces the earlier one.
     *
     * @param method the method
     */
    public static synchronized void register(PeftMethod method) {
        METHODS.put(method.peftType(), method);
        MAPPER.registerSubtypes(new NamedType(method.configType(), method.peftType()));
    }

    /** @return the registered {@code peft_type} values, sorted */
    public static java.util.Set<String> types() {
        return java.util.Set.copyOf(new java.util.TreeSet<>(METHODS.keySet()));
    }

    /**
     * @param peftType a {@code peft_type}
     * @return the method
     */
    public static PeftMethod get(String peftType) {
        PeftMethod m = METHODS.get(peftType);
        if (m == null) {
            throw new PeftException("peft_type '" + peftType + "' is not available; registered methods: " + METHODS.keySet()
                    + " (add the peft4j module that provides it to the classpath)");
        }
        return m;
    }

    /** @return the configured mapper */
    public static ObjectMapper mapper() {
        return MAPPER;
    }

    /**
     * Parses a config from JSON text.
     *
     * @param json the text
     * @param where its source, for messages
     * @return the config
     */
    public static PeftConfig parse(String json, String where) {
        JsonNode node;
        try {
            node = MAPPER.readTree(json);
        } catch (IOException e) {
            throw new PeftException(where + ": malformed JSON: " + e.getMessage(), e);
        }
        if (!(node instanceof ObjectNode) || !node.hasNonNull("peft_type")) {
            throw new PeftException(where + ": expected a JSON object with a 'peft_type' key");
        }
        PeftMethod m = get(node.get("peft_type").asText());
        try {
            PeftConfig c = MAPPER.treeToValue(node, m.configType());
            c.validate(where);
            return c;
        } catch (IOException | IllegalArgumentException e) {
            throw new PeftException(where + ": invalid " + m.peftType() + " config: " + e.getMessage(), e);
        }
    }

    /**
     * Reads {@code adapter_config.json}.
     *
     * @param file the file
     * @return the config
     */
    public static PeftConfig read(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new PeftException(file + ": no such file (an adapter directory holds adapter_config.json)");
        }
        try {
            return parse(Files.readString(io.github.peft4j.io.SizeLimits.check(file, io.github.peft4j.io.SizeLimits.CONFIG_JSON)), file.toString());
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    /**
     * Serialises a config as HF PEFT writes it.
     *
     * @param config the config
     * @return JSON text
     */
    public static String toJson(PeftConfig config) {
        try {
            return MAPPER.writeValueAsString(config);
        } catch (IOException e) {
            throw new PeftException("cannot serialise " + config.peftType() + " config: " + e.getMessage(), e);
        }
    }

    /**
     * A deep copy through JSON.
     *
     * @param config a config
     * @param <C> its type
     * @return an independent copy
     */
    @SuppressWarnings("unchecked")
    public static <C extends PeftConfig> C copy(C config) {
        C copy = (C) parse(toJson(config), "copy of " + config.peftType() + " config");
        config.copyRuntimeFields(copy);
        return copy;
    }
}
