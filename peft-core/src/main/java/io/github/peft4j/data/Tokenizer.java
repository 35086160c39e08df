package io.github.peft4j.data;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A Hugging Face fast tokenizer ({@code tokenizer.json}) run by DJL's native tokenizers library, with the
 * special-token ids a training run needs.
 *
 * <p>The tokenizer never truncates or pads: whatever {@code tokenizer.json} says, truncation and padding are
 * switched off, so {@link #encode} returns every token of the text (readers truncate explicitly). The native
 * library ships inside the tokenizers jar; nothing is downloaded.
 *
 * <p>Special tokens are resolved from, in order: {@code tokenizer_config.json} ({@code bos_token},
 * {@code eos_token}, {@code pad_token}, as a string or an {@code {"content": ...}} object), then
 * {@code special_tokens_map.json}, then the model's {@code config.json} ({@code bos_token_id},
 * {@code eos_token_id} (first entry of a list), {@code pad_token_id}).
 */
public final class Tokenizer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Tokenizer.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HuggingFaceTokenizer tokenizer;
    private final Path file;
    private final Map<String, Integer> vocab;
    private final OptionalInt bos;
    private final OptionalInt eos;
    private final OptionalInt pad;

    private Tokenizer(HuggingFaceTokenizer tokenizer, Path file, Map<String, Integer> vocab, Path dir) {
        this.tokenizer = tokenizer;
        this.file = file;
        this.vocab = vocab;
        this.bos = special(dir, "bos");
        this.eos = special(dir, "eos");
        this.pad = special(dir, "pad");
    }

    /**
     * Loads a tokenizer.
     *
     * @param dirOrTokenizerJson a model directory holding {@code tokenizer.json} (and optionally
     *     {@code tokenizer_config.json}, {@code special_tokens_map.json}, {@code config.json}), or the
     *     {@code tokenizer.json} file itself (its directory is searched for the other files)
     * @return the tokenizer; close it when done (it holds native memory)
     * @throws PeftException naming the path when {@code tokenizer.json} is missing or unreadable
     */
    public static Tokenizer load(Path dirOrTokenizerJson) {
        Path file = Files.isDirectory(dirOrTokenizerJson) ? dirOrTokenizerJson.resolve("tokenizer.json")
                : dirOrTokenizerJson;
        if (!Files.isRegularFile(file)) {
            throw new PeftException(file + ": tokenizer.json not found (expected a Hugging Face fast tokenizer file"
                    + " or a directory holding one)");
        }
        byte[] bytes;
        JsonNode root;
        try {
            bytes = Files.readAllBytes(io.github.peft4j.io.SizeLimits.check(file, io.github.peft4j.io.SizeLimits.TOKENIZER_JSON));
            root = JSON.readTree(bytes);
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read tokenizer.json: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject() || !root.has("model")) {
            throw new PeftException(file + ": not a Hugging Face tokenizer.json (expected a JSON object with a"
                    + " \"model\" entry)");
        }
        checkPostProcessor(file, root.get("post_processor"));
        Map<String, String> options = new HashMap<>();
        options.put("addSpecialTokens", "true");
        options.put("truncation", "false");
        options.put("padding", "false");
        HuggingFaceTokenizer hf;
        try {
            hf = HuggingFaceTokenizer.newInstance(new ByteArrayInputStream(bytes), options);
        } catch (IOException | RuntimeException e) {
            throw new PeftException(file + ": the tokenizers library rejected tokenizer.json: " + e.getMessage(), e);
        }
        if (!"DO_NOT_TRUNCATE".equals(hf.getTruncation()) || !"DO_NOT_PAD".equals(hf.getPadding())) {
            hf.close();
            throw new IllegalStateException("DJL tokenizer kept truncation " + hf.getTruncation() + " / padding "
                    + hf.getPadding());
        }
        Path dir = file.toAbsolutePath().getParent();
        Tokenizer t = new Tokenizer(hf, file, vocabulary(root), dir);
        LOG.debug("loaded tokenizer {} ({} tokens, bos {}, eos {}, pad {})", file, t.vocab.size(), t.bos, t.eos, t.pad);
        return t;
    }

    /**
     * Checks what the native tokenizers library takes on trust and would abort the whole JVM over (a Rust panic
     * cannot unwind through JNI): every special token a {@code TemplateProcessing} template names must be in its
     * {@code special_tokens}, each with as many {@code ids} as {@code tokens} (found by fuzzing tokenizer.json).
     */
    private static void checkPostProcessor(Path file, JsonNode pp) {
        if (pp == null || !pp.isObject()) {
            return;
        }
        String type = pp.path("type").asText("");
        if (type.equals("Sequence")) {
            for (JsonNode p : pp.path("processors")) {
                checkPostProcessor(file, p);
            }
            return;
        }
        if (!type.equals("TemplateProcessing")) {
            return;
        }
        JsonNode special = pp.path("special_tokens");
        for (String template : List.of("single", "pair")) {
            for (JsonNode piece : pp.path(template)) {
                JsonNode st = piece.get("SpecialToken");
                if (st != null && !special.has(st.path("id").asText(""))) {
                    throw new PeftException(file + ": post_processor template '" + template + "' names special token "
                            + st.path("id") + " that its special_tokens do not define (defined: "
                            + iterable(special.fieldNames()) + ")");
                }
            }
        }
        for (Iterator<Map.Entry<String, JsonNode>> it = special.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> e = it.next();
            if (e.getValue().path("ids").size() != e.getValue().path("tokens").size()) {
                throw new PeftException(file + ": post_processor special token '" + e.getKey() + "' has "
                        + e.getValue().path("ids").size() + " ids but " + e.getValue().path("tokens").size() + " tokens");
            }
        }
    }

    private static List<String> iterable(Iterator<String> it) {
        List<String> out = new java.util.ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }

    /** Runs a call into the native library, turning its errors (a vocabulary without [UNK]...) into PeftExceptions. */
    private <T> T call(String what, java.util.function.Supplier<T> f) {
        try {
            return f.get();
        } catch (RuntimeException e) {
            if (e instanceof PeftException || e instanceof IllegalArgumentException) {
                throw e;
            }
            throw new PeftException(file + ": the tokenizers library failed to " + what + ": " + e.getMessage(), e);
        }
    }

    /** Token → id from the model vocabulary (BPE/WordPiece/WordLevel map or Unigram list) and added tokens. */
    private static Map<String, Integer> vocabulary(JsonNode root) {
        Map<String, Integer> out = new HashMap<>();
        JsonNode v = root.path("model").path("vocab");
        if (v.isObject()) {
            for (Iterator<Map.Entry<String, JsonNode>> it = v.fields(); it.hasNext();) {
                Map.Entry<String, JsonNode> e = it.next();
                out.put(e.getKey(), e.getValue().asInt());
            }
        } else if (v.isArray()) {
            for (int i = 0; i < v.size(); i++) {
                out.put(v.get(i).path(0).asText(), i);
            }
        }
        for (JsonNode added : root.path("added_tokens")) {
            if (added.has("content") && added.has("id")) {
                out.put(added.get("content").asText(), added.get("id").asInt());
            }
        }
        return out;
    }

    private OptionalInt special(Path dir, String kind) {
        for (String name : new String[] {"tokenizer_config.json", "special_tokens_map.json"}) {
            JsonNode node = readOptional(dir.resolve(name)).path(kind + "_token");
            String token = node.isTextual() ? node.asText() : node.path("content").isTextual()
                    ? node.path("content").asText() : null;
            if (token != null) {
                Integer id = vocab.get(token);
                if (id == null) {
                    throw new PeftException(dir.resolve(name) + ": " + kind + "_token \"" + token
                            + "\" is not a token of " + file);
                }
                return OptionalInt.of(id);
            }
        }
        JsonNode id = readOptional(dir.resolve("config.json")).path(kind + "_token_id");
        if (id.isArray() && !id.isEmpty()) {
            id = id.get(0);
        }
        return id.isIntegralNumber() ? OptionalInt.of(id.asInt()) : OptionalInt.empty();
    }

    private static JsonNode readOptional(Path p) {
        if (!Files.isRegularFile(p)) {
            return JSON.missingNode();
        }
        try {
            JsonNode n = JSON.readTree(io.github.peft4j.io.SizeLimits.check(p, io.github.peft4j.io.SizeLimits.CONFIG_JSON).toFile());
            return n == null ? JSON.missingNode() : n;
        } catch (IOException e) {
            throw new PeftException(p + ": not valid JSON: " + e.getMessage(), e);
        }
    }

    /**
     * Encodes text, never truncating or padding.
     *
     * @param text the text
     * @param addSpecialTokens add the tokenizer's post-processor tokens (e.g. {@code <s>}, {@code [CLS] ... [SEP]})
     * @return the token ids
     */
    public int[] encode(String text, boolean addSpecialTokens) {
        return toInt(call("encode", () -> tokenizer.encode(text, addSpecialTokens, false)).getIds());
    }

    /**
     * Encodes a sentence already split into words (Hugging Face's {@code is_split_into_words=True}), for token
     * classification.
     *
     * @param words the words, at least one
     * @param addSpecialTokens add the tokenizer's post-processor tokens
     * @return the ids and, per token, the index of its word (-1 for special tokens)
     */
    public WordEncoding encodeWords(List<String> words, boolean addSpecialTokens) {
        if (words.isEmpty()) {
            throw new IllegalArgumentException("encodeWords needs at least one word");
        }
        Encoding e = call("encode", () -> tokenizer.encode(words.toArray(new String[0]), addSpecialTokens, false));
        long[] special = e.getSpecialTokenMask();
        long[] w = e.getWordIds();
        int[] wordIds = new int[w.length];
        for (int i = 0; i < w.length; i++) {
            wordIds[i] = special[i] != 0 ? -1 : (int) w[i];
        }
        return new WordEncoding(toInt(e.getIds()), wordIds);
    }

    /**
     * The result of {@link #encodeWords}.
     *
     * @param ids token ids
     * @param wordIds per token, the index of the word it comes from, or -1 for special tokens
     */
    public record WordEncoding(int[] ids, int[] wordIds) {
    }

    /**
     * Decodes ids to text.
     *
     * @param ids the token ids
     * @param skipSpecialTokens leave special tokens out of the text
     * @return the text
     */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            l[i] = ids[i];
        }
        return call("decode", () -> tokenizer.decode(l, skipSpecialTokens));
    }

    /** @return the end-of-sequence token id, if the tokenizer or model declares one */
    public OptionalInt eosTokenId() {
        return eos;
    }

    /** @return the beginning-of-sequence token id, if the tokenizer or model declares one */
    public OptionalInt bosTokenId() {
        return bos;
    }

    /** @return the padding token id, if the tokenizer or model declares one */
    public OptionalInt padTokenId() {
        return pad;
    }

    /**
     * Looks a token up in the vocabulary (model vocabulary and added tokens), e.g. {@code "</s>"}.
     *
     * @param token the token's exact string
     * @return its id, or empty when it is not a single token of this vocabulary
     */
    public OptionalInt tokenId(String token) {
        Integer id = vocab.get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** @return the number of entries in the vocabulary, added tokens included */
    public int vocabSize() {
        return vocab.size();
    }

    /** @return the tokenizer.json file this tokenizer was loaded from */
    public Path file() {
        return file;
    }

    /** Frees the native tokenizer. */
    @Override
    public void close() {
        tokenizer.close();
    }

    private static int[] toInt(long[] ids) {
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }
}
