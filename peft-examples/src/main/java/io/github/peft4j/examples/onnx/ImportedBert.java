package io.github.peft4j.examples.onnx;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A BERT encoder read from ONNX by {@link OnnxBertImporter}: its {@code config.json} and its weights under Hugging
 * Face names, in the Linear layout {@code [out, in]}.
 *
 * @param source the ONNX file, for messages
 * @param config the derived config.json
 * @param tensors the weights by Hugging Face name (sorted)
 * @param hasPooler whether the export carried {@code pooler.dense}
 * @param skipped initializers that are not weights (the {@code position_ids} buffer) or were used by no node
 */
public record ImportedBert(String source, ObjectNode config, Map<String, Tensor> tensors, boolean hasPooler,
        List<String> skipped) {
    private static final Logger LOG = LoggerFactory.getLogger(ImportedBert.class);
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /**
     * One fp32 weight.
     *
     * @param shape its shape
     * @param data row-major values
     */
    public record Tensor(long[] shape, float[] data) {}

    /** @return the number of weights (scalars) */
    public long numParameters() {
        return tensors.values().stream().mapToLong(t -> t.data().length).sum();
    }

    /**
     * Saves a Hugging Face model directory: {@code config.json}, {@code model.safetensors} and, when a tokenizer
     * is given, {@code tokenizer.json} (with its fixed padding removed: padding is the collator's job) and a
     * {@code tokenizer_config.json} derived from it. The directory appears complete or not at all: everything is
     * written into a temporary directory beside it that is then renamed.
     *
     * @param dir the directory to create
     * @param tokenizerJson the tokenizer.json bytes, or null to save the model only
     * @param overwrite replace {@code dir} when it exists and is not empty (otherwise that is an error)
     * @throws PeftException if {@code dir} is a file, or a non-empty directory and {@code overwrite} is false
     */
    public void save(Path dir, byte[] tokenizerJson, boolean overwrite) {
        Path target = dir.toAbsolutePath().normalize();
        boolean exists = Files.exists(target);
        if (exists && !Files.isDirectory(target)) {
            throw new PeftException(dir + " exists and is not a directory");
        }
        boolean nonEmpty = exists && !isEmpty(target);
        if (nonEmpty && !overwrite) {
            throw new PeftException(dir + " is not empty; choose a new directory or pass --overwrite to replace it");
        }
        Path parent = target.getParent();
        String suffix = Long.toHexString(RANDOM.nextLong());
        Path tmp = parent.resolve("." + target.getFileName() + ".import-" + suffix);
        try {
            Files.createDirectories(parent);
            Files.createDirectory(tmp);
            writeInto(tmp, tokenizerJson);
            AtomicFiles.replaceDirectory(tmp, target);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot save the imported model to " + dir + ": " + e.getMessage(), e);
        } finally {
            deleteTree(tmp);
        }
        LOG.info("saved {} ({} weights) to {}", source, tensors.size(), dir);
    }

    private void writeInto(Path dir, byte[] tokenizerJson) throws IOException {
        AtomicFiles.writeBytes(dir.resolve("config.json"), JSON.writeValueAsBytes(config));
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            Map<String, NDArray> arrays = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
                try (NDArray view = m.create(e.getValue().data(), new Shape(e.getValue().shape()))) {
                    arrays.put(e.getKey(), view.duplicate()); // own the memory; create() may alias the Java array
                }
            }
            SafeTensorsWriter.write(dir.resolve(SafeTensorsWriter.SINGLE_FILE), arrays, Map.of("format", "pt"));
        }
        if (tokenizerJson != null) {
            ObjectNode tok = parseTokenizer(tokenizerJson);
            ObjectNode tokConfig = tokenizerConfig(tok);
            tok.set("padding", NullNode.getInstance());
            AtomicFiles.writeBytes(dir.resolve("tokenizer.json"), new ObjectMapper().writeValueAsBytes(tok));
            AtomicFiles.writeBytes(dir.resolve("tokenizer_config.json"), JSON.writeValueAsBytes(tokConfig));
        }
    }

    private ObjectNode parseTokenizer(byte[] bytes) {
        try {
            JsonNode n = new ObjectMapper().readTree(bytes);
            if (!(n instanceof ObjectNode o) || !o.has("model") || !o.get("model").has("vocab")) {
                throw new PeftException(source + ": the tokenizer is not a tokenizer.json (no model.vocab)");
            }
            JsonNode vocab = o.get("model").get("vocab");
            int size = vocab.size();
            int want = config.get("vocab_size").asInt();
            if (size > want) {
                throw new PeftException("tokenizer has " + size + " tokens but the model's vocab_size is " + want);
            }
            return o;
        } catch (IOException e) {
            throw new PeftException("the tokenizer is not valid JSON: " + e.getMessage());
        }
    }

    /** tokenizer_config.json for transformers' BertTokenizer(Fast): casing, length and special tokens. */
    private ObjectNode tokenizerConfig(ObjectNode tok) {
        ObjectNode c = JSON.createObjectNode();
        c.put("tokenizer_class", "BertTokenizer");
        JsonNode norm = tok.path("normalizer");
        c.put("do_lower_case", norm.path("lowercase").asBoolean(true));
        int maxLen = tok.path("truncation").path("max_length").asInt(config.get("max_position_embeddings").asInt());
        c.put("model_max_length", maxLen);
        c.put("clean_up_tokenization_spaces", true);
        Map<String, String> specials = Map.of("[PAD]", "pad_token", "[UNK]", "unk_token", "[CLS]", "cls_token",
                "[SEP]", "sep_token", "[MASK]", "mask_token");
        for (JsonNode t : tok.path("added_tokens")) {
            String key = specials.get(t.path("content").asText());
            if (key != null) {
                c.put(key, t.path("content").asText());
            }
        }
        return c;
    }

    private static boolean isEmpty(Path dir) {
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir)) {
            return !s.iterator().hasNext();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void deleteTree(Path p) {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(q);
            }
        } catch (IOException e) {
            LOG.warn("could not delete {}: {}", p, e.getMessage());
        }
    }
}
