package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.testing.TestTokenizers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Java encodings equal the Python {@code tokenizers} library's (recorded by make_tokenizers.py). */
class TokenizerTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).asInt();
        }
        return out;
    }

    private static void matchesPython(String name, Path dir) throws Exception {
        JsonNode expected = JSON.readTree(TestTokenizers.root().resolve("expected.json").toFile()).get(name);
        try (Tokenizer tok = Tokenizer.load(dir)) {
            int checked = 0;
            for (JsonNode t : expected.get("texts")) {
                String text = t.get("text").asText();
                assertArrayEquals(ints(t.get("ids")), tok.encode(text, true), name + " " + text);
                assertArrayEquals(ints(t.get("ids_no_special")), tok.encode(text, false), name + " " + text);
                assertEquals(t.get("decoded_skip_special").asText(), tok.decode(ints(t.get("ids")), true));
                assertEquals(t.get("decoded_keep_special").asText(), tok.decode(ints(t.get("ids")), false));
                checked++;
            }
            for (JsonNode w : expected.get("words")) {
                List<String> words = new ArrayList<>();
                w.get("words").forEach(x -> words.add(x.asText()));
                Tokenizer.WordEncoding e = tok.encodeWords(words, w.get("add_special").asBoolean());
                assertArrayEquals(ints(w.get("ids")), e.ids(), name + " " + words);
                assertArrayEquals(ints(w.get("word_ids")), e.wordIds(), name + " " + words);
                checked++;
            }
            assertEquals(12, checked);
        }
    }

    @Test
    void bpeMatchesPython() throws Exception {
        matchesPython("bpe", TestTokenizers.bpe());
    }

    @Test
    void wordPieceMatchesPython() throws Exception {
        matchesPython("wordpiece", TestTokenizers.wordpiece());
    }

    @Test
    void specialTokensFromTokenizerConfig() {
        try (Tokenizer bpe = Tokenizer.load(TestTokenizers.bpe().resolve("tokenizer.json"))) {
            assertEquals(OptionalInt.of(0), bpe.bosTokenId());
            assertEquals(OptionalInt.of(1), bpe.eosTokenId());
            assertEquals(OptionalInt.of(2), bpe.padTokenId());
            assertEquals(OptionalInt.of(4), bpe.tokenId("<|im_end|>"));
            assertEquals(OptionalInt.empty(), bpe.tokenId("no such token"));
            assertEquals(128, bpe.vocabSize());
        }
        try (Tokenizer wp = Tokenizer.load(TestTokenizers.wordpiece())) {
            assertEquals(OptionalInt.empty(), wp.bosTokenId());
            assertEquals(OptionalInt.empty(), wp.eosTokenId());
            assertEquals(OptionalInt.of(0), wp.padTokenId());
            assertEquals(OptionalInt.of(2), wp.tokenId("[CLS]"));
            assertEquals(111, wp.vocabSize());
        }
    }

    @Test
    void specialTokensFromSpecialMapAndModelConfig(@TempDir Path dir) throws Exception {
        Files.copy(TestTokenizers.bpe().resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        // no tokenizer_config.json: ids come from config.json (eos as a list, as Llama 3 writes it)
        Files.writeString(dir.resolve("config.json"), "{\"bos_token_id\": 0, \"eos_token_id\": [1, 4]}");
        try (Tokenizer t = Tokenizer.load(dir)) {
            assertEquals(OptionalInt.of(0), t.bosTokenId());
            assertEquals(OptionalInt.of(1), t.eosTokenId());
            assertEquals(OptionalInt.empty(), t.padTokenId());
        }
        // special_tokens_map.json (object form) wins over config.json
        Files.writeString(dir.resolve("special_tokens_map.json"),
                "{\"eos_token\": {\"content\": \"<|im_end|>\", \"lstrip\": false}, \"pad_token\": \"</s>\"}");
        try (Tokenizer t = Tokenizer.load(dir)) {
            assertEquals(OptionalInt.of(4), t.eosTokenId());
            assertEquals(OptionalInt.of(1), t.padTokenId());
        }
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"eos_token\": \"<nope>\"}");
        PeftException e = assertThrows(PeftException.class, () -> Tokenizer.load(dir));
        assertTrue(e.getMessage().contains("tokenizer_config.json") && e.getMessage().contains("<nope>"),
                e.getMessage());
    }

    @Test
    void neverTruncatesOrPads() {
        try (Tokenizer t = Tokenizer.load(TestTokenizers.bpe())) {
            String text = "hello world ".repeat(300); // far beyond DJL's default 512-token truncation
            int[] one = t.encode("hello world ", false);
            int[] all = t.encode(text, false);
            assertTrue(all.length > 512, "length " + all.length);
            assertEquals(300 * one.length, all.length);
            assertEquals(text, t.decode(all, true));
        }
    }

    @Test
    void missingOrBrokenFilesNameThePath(@TempDir Path dir) throws Exception {
        PeftException missing = assertThrows(PeftException.class, () -> Tokenizer.load(dir));
        assertTrue(missing.getMessage().contains(dir.resolve("tokenizer.json").toString()), missing.getMessage());
        Files.writeString(dir.resolve("tokenizer.json"), "{not json");
        PeftException bad = assertThrows(PeftException.class, () -> Tokenizer.load(dir));
        assertTrue(bad.getMessage().contains(dir.resolve("tokenizer.json").toString()), bad.getMessage());
        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"Nonsense\"}}");
        PeftException rejected = assertThrows(PeftException.class, () -> Tokenizer.load(dir));
        assertTrue(rejected.getMessage().contains(dir.resolve("tokenizer.json").toString()), rejected.getMessage());
    }
}
