package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * llama2.c's tokenizer on a small synthetic tokenizer.bin (byte tokens stored as characters, as in the file shipped
 * with stories15M): merges by best score, byte fallback, raw-byte decoding, format errors, and the same ids and text
 * from the exported tokenizer.json run by DJL's tokenizers library.
 */
class Llama2cTokenizerTest {
    /** Pieces after the 259 special and byte tokens, with their scores. */
    static final String[] PIECES = {" ", "a", "b", "c", "é", "ab", " a", " ab", "bc", "abc", " abc", "ca", " c", "€",
        "!", " b", "cab", "ll", "l", "o", " h", "h", "e", "he", " he", "llo", " hello", "hello", "el", "lo"};

    static byte[] tokenizerBin(boolean hexBytes, String[] pieces) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        List<byte[]> toks = new ArrayList<>();
        List<Float> scores = new ArrayList<>();
        toks.add("<unk>".getBytes(StandardCharsets.UTF_8));
        toks.add("\n<s>\n".getBytes(StandardCharsets.UTF_8));
        toks.add("\n</s>\n".getBytes(StandardCharsets.UTF_8));
        for (int i = 0; i < 3; i++) {
            scores.add(0f);
        }
        for (int b = 0; b < 256; b++) {
            toks.add((hexBytes ? String.format("<0x%02X>", b) : Character.toString(b)).getBytes(StandardCharsets.UTF_8));
            scores.add(0f);
        }
        for (int i = 0; i < pieces.length; i++) {
            toks.add(pieces[i].getBytes(StandardCharsets.UTF_8));
            scores.add(pieces[i].equals(" ") ? -1e9f : -(float) i);
        }
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(8);
        for (int i = 0; i < toks.size(); i++) {
            b.putFloat(scores.get(i));
            b.putInt(toks.get(i).length);
            b.put(toks.get(i));
        }
        out.write(b.array(), 0, b.position());
        return out.toByteArray();
    }

    static Llama2cTokenizer tiny() {
        return Llama2cTokenizer.parse(tokenizerBin(false, PIECES), 259 + PIECES.length, "tiny.bin");
    }

    static int id(String piece) {
        for (int i = 0; i < PIECES.length; i++) {
            if (PIECES[i].equals(piece)) {
                return 259 + i;
            }
        }
        throw new AssertionError(piece);
    }

    @Test
    void mergesBestScoreFirstWithDummyPrefixAndBos() {
        Llama2cTokenizer t = tiny();
        // "abc" after the dummy prefix: "ab" (-5) merges before " a" (-6), then "abc" (-9) before " ab" (-7)? no:
        // " ab" is -7 > -9, so " ab", then " abc"
        assertArrayEquals(new int[] {1, id(" abc")}, t.encode("abc", true));
        assertArrayEquals(new int[] {id(" hello"), id(" abc")}, t.encode("hello abc", false));
        assertArrayEquals(new int[0], t.encode("", false));
        assertArrayEquals(new int[] {1}, t.encode("", true));
        // "cab": "ab" (-5) beats "ca" (-11) and " c" (-12); then " c" (-12) beats "cab" (-16); " cab" is no piece
        assertArrayEquals(new int[] {id(" c"), id("ab")}, t.encode("cab", false));
    }

    @Test
    void bytesFallBackAndDecodeRaw() {
        Llama2cTokenizer t = tiny();
        // "ß" is no piece: its UTF-8 bytes C3 9F become byte tokens 3 + byte; "é" is a piece; "😀" is 4 bytes
        int[] ids = t.encode("aßé😀", false);
        assertArrayEquals(new int[] {id(" a"), 3 + 0xC3, 3 + 0x9F, id("é"), 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80}, ids);
        assertEquals("aßé😀", t.decode(ids));
        assertEquals("a\u00ff", t.decode(new int[] {id(" a"), 3 + 0xC3, 3 + 0xBF}));
        // a byte token is the raw byte, not the character it is stored as (U+00C3 would be C3 83 in UTF-8)
        assertEquals("\ufffd", t.decode(new int[] {3 + 0xC3}));
        // special tokens are skipped; the space after a BOS is dropped
        assertEquals("abc b", t.decode(new int[] {1, id(" abc"), id(" b"), 2}));
        for (String s : List.of("hello abc!", "€ café", "\u0080\u00ff\u0100", "tab\there", "a  b")) {
            assertEquals(s, t.decode(t.encode(s, true)), s);
        }
    }

    @Test
    void hexByteTokensReadTheSame() {
        Llama2cTokenizer a = tiny();
        Llama2cTokenizer b = Llama2cTokenizer.parse(tokenizerBin(true, PIECES), 259 + PIECES.length, "hex.bin");
        for (String s : List.of("hello abc", "ßé€!", "cab ca")) {
            assertArrayEquals(a.encode(s, true), b.encode(s, true), s);
            assertEquals(a.decode(a.encode(s, true)), b.decode(b.encode(s, true)));
        }
    }

    @Test
    void badFilesGiveOneLineErrors() {
        byte[] good = tokenizerBin(false, PIECES);
        int n = 259 + PIECES.length;
        PeftException e = assertThrows(PeftException.class,
                () -> Llama2cTokenizer.parse(java.util.Arrays.copyOf(good, good.length - 3), n, "cut.bin"));
        assertTrue(e.getMessage().startsWith("cut.bin: "), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"));
        e = assertThrows(PeftException.class, () -> Llama2cTokenizer.parse(good, n - 1, "short.bin"));
        assertTrue(e.getMessage().contains("bytes after token"), e.getMessage());
        e = assertThrows(PeftException.class, () -> Llama2cTokenizer.parse(good, n + 1, "long.bin"));
        assertTrue(e.getMessage().contains("ends at token " + n), e.getMessage());
        byte[] bad = good.clone();
        bad[4 + 8 * 4 + 5 + 5 + 6] = 'x'; // token 3's single byte (after <unk>, \n<s>\n, \n</s>\n)
        e = assertThrows(PeftException.class, () -> Llama2cTokenizer.parse(bad, n, "bad.bin"));
        assertTrue(e.getMessage().contains("token 3") && e.getMessage().contains("<0x00>"), e.getMessage());
        byte[] zero = good.clone();
        zero[0] = 0;
        e = assertThrows(PeftException.class, () -> Llama2cTokenizer.parse(zero, n, "zero.bin"));
        assertTrue(e.getMessage().contains("max_token_length 0"), e.getMessage());
        String[] dup = PIECES.clone();
        dup[3] = "a";
        e = assertThrows(PeftException.class, () -> Llama2cTokenizer.parse(tokenizerBin(false, dup), n, "dup.bin"));
        assertTrue(e.getMessage().contains("repeats"), e.getMessage());
    }

    @Test
    void tokenizerJsonEncodesAndDecodesTheSame(@TempDir Path dir) throws Exception {
        Llama2cTokenizer t = tiny();
        Files.write(dir.resolve("tokenizer.json"), t.tokenizerJsonBytes());
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}");
        try (Tokenizer hf = Tokenizer.load(dir)) {
            assertEquals(1, hf.bosTokenId().getAsInt());
            assertEquals(2, hf.eosTokenId().getAsInt());
            for (String s : List.of("abc", "hello abc", "cab", "aßé😀", "hello, hello abc!\nca b", "€€ cab abc",
                    "\u0080\u00ff", "x", "he llo")) {
                int[] ours = t.encode(s, true);
                assertArrayEquals(ours, hf.encode(s, true), s);
                assertArrayEquals(t.encode(s, false), hf.encode(s, false), s);
                assertEquals(t.decode(ours), hf.decode(ours, true), s);
            }
        }
    }
}
