package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * tokenizer.json files found by fuzzing: one made the native tokenizers library panic, which aborts the JVM (a Rust
 * panic cannot unwind through JNI); both are now refused with a one-line {@link PeftException}.
 */
class TokenizerHostileTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path TOKENIZERS = Fixtures.root().resolveSibling("tokenizers");

    @TempDir
    Path dir;

    private Path write(ObjectNode root) throws IOException {
        Path f = dir.resolve("tokenizer.json");
        Files.writeString(f, JSON.writeValueAsString(root));
        return f;
    }

    @Test
    void aTemplateNamingAnUndefinedSpecialTokenIsRefusedBeforeTheNativeLibrarySeesIt() throws IOException {
        ObjectNode root = (ObjectNode) JSON.readTree(TOKENIZERS.resolve("bpe/tokenizer.json").toFile());
        ObjectNode pp = (ObjectNode) root.get("post_processor");
        ((ObjectNode) pp.get("single").get(0).get("SpecialToken")).put("id", "<s4");
        Path f = write(root);
        PeftException e = assertThrows(PeftException.class, () -> Tokenizer.load(f));
        assertTrue(e.getMessage().endsWith("tokenizer.json: post_processor template 'single' names special token "
                + "\"<s4\" that its special_tokens do not define (defined: [<s>])"), e.getMessage());
        System.out.println("hostile tokenizer: " + e.getMessage());
    }

    @Test
    void aWordPieceVocabularyWithoutItsUnknownTokenFailsAsPeftException() throws IOException {
        ObjectNode root = (ObjectNode) JSON.readTree(TOKENIZERS.resolve("wordpiece/tokenizer.json").toFile());
        ((ObjectNode) root.get("model")).put("unk_token", "[NOPE]");
        Path f = write(root);
        try (Tokenizer t = Tokenizer.load(f)) {
            PeftException e = assertThrows(PeftException.class, () -> t.encode("\u2603 snowman", false));
            assertTrue(e.getMessage().contains("tokenizer.json: the tokenizers library failed to encode: WordPiece error"),
                    e.getMessage());
            System.out.println("hostile tokenizer: " + e.getMessage());
        }
    }
}
