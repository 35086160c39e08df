package io.github.peft4j.data;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The SentencePiece-BPE tokenizer of Karpathy's llama2.c, read from its {@code tokenizer.bin}, encoding and decoding
 * as llama2.c's {@code run.c} does: an optional BOS (id 1), the dummy-prefix space before non-empty text, one token
 * per UTF-8 character found in the vocabulary and byte fallback ({@code id = byte + 3}) for the others, then greedy
 * merges of the adjacent pair whose concatenation is the vocabulary piece with the best score (the leftmost pair on
 * a tie). Decoding writes byte tokens as raw bytes and drops the space that follows a BOS.
 *
 * <p>{@code tokenizer.bin}: int32 {@code max_token_length}, then per token float32 score, int32 byte length, the
 * UTF-8 bytes (little endian). Ids 0, 1, 2 are {@code <unk>}, {@code <s>} (stored as {@code "\n<s>\n"}),
 * {@code </s>}; ids 3..258 are the byte tokens, stored either as {@code "<0xNN>"} (current llama2.c) or, in the file
 * shipped with stories15M, as the UTF-8 encoding of the character U+00NN: both are read as the raw byte NN, and
 * a character is looked up among the other pieces only (as SentencePiece does), never among byte tokens.
 *
 * <p>{@link #tokenizerJson()} writes the same tokenizer as a Hugging Face {@code tokenizer.json} (BPE with
 * byte fallback, merges ranked by the merged piece's score) that the tokenizers library encodes identically, except
 * inside runs of two or more spaces, whose pieces share one score (there llama2.c's leftmost rule and a merge rank
 * can pick different splits).
 */
public final class Llama2cTokenizer {
    /** The {@code <unk>} id. */
    public static final int UNK = 0;
    /** The {@code <s>} id. */
    public static final int BOS = 1;
    /** The {@code </s>} id. */
    public static final int EOS = 2;
    /** The first byte-token id ({@code <0x00>}); byte b is {@code BYTE_OFFSET + b}. */
    public static final int BYTE_OFFSET = 3;
    private static final int FIRST_PIECE = BYTE_OFFSET + 256;

    private final String source;
    private final String[] pieces; // decoded text of each normal piece (null for special and byte tokens)
    private final float[] scores;
    private final Map<String, Integer> byText = new HashMap<>();
    private final int maxTokenLength;

    private Llama2cTokenizer(String source, String[] pieces, float[] scores, int maxTokenLength) {
        this.source = source;
        this.pieces = pieces;
        this.scores = scores;
        this.maxTokenLength = maxTokenLength;
        for (int i = FIRST_PIECE; i < pieces.length; i++) {
            Integer had = byText.put(pieces[i], i);
            if (had != null) {
                throw new PeftException(source + ": token " + i + " repeats the text of token " + had + " ("
                        + quote(pieces[i]) + "); expected distinct pieces");
            }
        }
    }

    /**
     * Parses a {@code tokenizer.bin}.
     *
     * @param bytes the file's bytes
     * @param vocabSize the number of tokens (the model header's {@code vocab_size})
     * @param source the file name, for messages
     * @return the tokenizer
     * @throws PeftException naming the source and offset when the bytes are not such a file
     */
    public static Llama2cTokenizer parse(byte[] bytes, int vocabSize, String source) {
        if (vocabSize < FIRST_PIECE + 1) {
            throw new PeftException(source + ": vocab_size " + vocabSize + " is too small for a llama2.c tokenizer"
                    + " (expected at least " + (FIRST_PIECE + 1) + ": 3 special tokens, 256 byte tokens, pieces)");
        }
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        if (b.remaining() < 4) {
            throw new PeftException(source + ": " + bytes.length + " bytes; expected a llama2.c tokenizer.bin"
                    + " (int32 max_token_length, then " + vocabSize + " tokens)");
        }
        int maxLen = b.getInt();
        if (maxLen < 1 || maxLen > 1024) {
            throw new PeftException(source + ": max_token_length " + maxLen + " at offset 0; expected 1..1024");
        }
        String[] pieces = new String[vocabSize];
        float[] scores = new float[vocabSize];
        for (int i = 0; i < vocabSize; i++) {
            int at = b.position();
            if (b.remaining() < 8) {
                throw new PeftException(source + ": ends at token " + i + " of " + vocabSize + " (offset " + at
                        + "); expected a float32 score and an int32 length");
            }
            scores[i] = b.getFloat();
            int len = b.getInt();
            if (len < 0 || len > maxLen * 4 + 8 || len > b.remaining()) {
                throw new PeftException(source + ": token " + i + " at offset " + at + " has byte length " + len
                        + "; expected 0.." + Math.min(maxLen * 4 + 8, b.remaining()));
            }
            byte[] piece = new byte[len];
            b.get(piece);
            String text = new String(piece, StandardCharsets.UTF_8);
            if (i >= BYTE_OFFSET && i < FIRST_PIECE) {
                int value = i - BYTE_OFFSET;
                boolean asChar = text.length() == 1 && text.charAt(0) == value;
                boolean asHex = text.equals(String.format("<0x%02X>", value));
                if (!asChar && !asHex) {
                    throw new PeftException(source + ": token " + i + " is " + quote(text) + "; expected the byte token"
                            + String.format(" <0x%02X> (or the character U+%04X)", value, value));
                }
            } else if (i >= FIRST_PIECE) {
                if (text.isEmpty()) {
                    throw new PeftException(source + ": token " + i + " at offset " + at + " is empty");
                }
                pieces[i] = text;
            }
        }
        if (b.hasRemaining()) {
            throw new PeftException(source + ": " + b.remaining() + " bytes after token " + (vocabSize - 1)
                    + "; expected the file to end there (is vocab_size " + vocabSize + " right?)");
        }
        return new Llama2cTokenizer(source, pieces, scores, maxLen);
    }

    /** @return the number of tokens */
    public int vocabSize() {
        return pieces.length;
    }

    /** @return the longest piece in bytes, as the file declares it */
    public int maxTokenLength() {
        return maxTokenLength;
    }

    /**
     * @param id a token id
     * @return its score (the merge priority of a piece)
     */
    public float score(int id) {
        return scores[id];
    }

    /**
     * Encodes text as llama2.c does.
     *
     * @param text the text
     * @param bos put {@link #BOS} first
     * @return the ids
     */
    public int[] encode(String text, boolean bos) {
        List<Integer> ids = new ArrayList<>();
        if (bos) {
            ids.add(BOS);
        }
        if (!text.isEmpty()) {
            List<Integer> t = new ArrayList<>();
            List<String> str = new ArrayList<>(); // the text of each symbol, null for byte tokens
            t.add(byText.get(" "));
            str.add(" ");
            text.codePoints().forEach(cp -> {
                String c = new String(Character.toChars(cp));
                Integer id = byText.get(c);
                if (id != null) {
                    t.add(id);
                    str.add(c);
                } else {
                    for (byte x : c.getBytes(StandardCharsets.UTF_8)) {
                        t.add(BYTE_OFFSET + (x & 0xff));
                        str.add(null);
                    }
                }
            });
            while (true) {
                float best = -1e10f;
                int bestId = -1;
                int bestAt = -1;
                for (int i = 0; i + 1 < t.size(); i++) {
                    if (str.get(i) == null || str.get(i + 1) == null) {
                        continue;
                    }
                    Integer id = byText.get(str.get(i) + str.get(i + 1));
                    if (id != null && scores[id] > best) {
                        best = scores[id];
                        bestId = id;
                        bestAt = i;
                    }
                }
                if (bestAt < 0) {
                    break;
                }
                t.set(bestAt, bestId);
                str.set(bestAt, pieces[bestId]);
                t.remove(bestAt + 1);
                str.remove(bestAt + 1);
            }
            ids.addAll(t);
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    /**
     * Decodes ids as llama2.c prints them: special tokens are skipped, byte tokens are raw bytes, and the space
     * that starts the piece after a BOS (the dummy prefix) is dropped; the ids are read as following a BOS, so a
     * leading space of the first piece is dropped too (as the tokenizers library's Llama decoder does). Invalid
     * UTF-8 becomes U+FFFD.
     *
     * @param ids token ids
     * @return the text
     */
    public String decode(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int prev = BOS; // a text starts as if after a BOS, like the tokenizers' Strip decoder
        for (int id : ids) {
            if (id < 0 || id >= pieces.length) {
                throw new PeftException("token id " + id + " is outside the vocabulary [0, " + pieces.length + ") of "
                        + source);
            }
            if (id >= BYTE_OFFSET && id < FIRST_PIECE) {
                out.write(id - BYTE_OFFSET);
            } else if (id >= FIRST_PIECE) {
                String p = pieces[id];
                if (prev == BOS && p.startsWith(" ")) {
                    p = p.substring(1);
                }
                out.writeBytes(p.getBytes(StandardCharsets.UTF_8));
            }
            prev = id;
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    /**
     * The Hugging Face name of a token: {@code <unk>}, {@code <s>}, {@code </s>}, {@code <0xNN>}, or the piece with
     * spaces written as U+2581.
     *
     * @param id a token id
     * @return its name in {@code tokenizer.json}
     */
    public String hfPiece(int id) {
        if (id == UNK) {
            return "<unk>";
        } else if (id == BOS) {
            return "<s>";
        } else if (id == EOS) {
            return "</s>";
        } else if (id < FIRST_PIECE) {
            return String.format("<0x%02X>", id - BYTE_OFFSET);
        }
        return pieces[id].replace(' ', '\u2581');
    }

    /**
     * This tokenizer as a Hugging Face {@code tokenizer.json}: normalizer prepend U+2581 and replace spaces by it,
     * BPE with byte fallback whose merges are every pair of pieces that concatenate to a piece, ranked by the
     * merged piece's score (best first), a template post-processor that puts {@code <s>} first, and the Llama
     * decoder (U+2581 to space, byte fallback, fuse, strip one leading space).
     *
     * @return the JSON
     */
    public ObjectNode tokenizerJson() {
        JsonNodeFactory f = JsonNodeFactory.instance;
        ObjectNode root = f.objectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int id = 0; id < BYTE_OFFSET; id++) {
            ObjectNode a = added.addObject();
            a.put("id", id).put("content", hfPiece(id)).put("single_word", false).put("lstrip", false)
                    .put("rstrip", false).put("normalized", false).put("special", true);
        }
        ObjectNode norm = root.putObject("normalizer");
        norm.put("type", "Sequence");
        ArrayNode ns = norm.putArray("normalizers");
        ns.addObject().put("type", "Prepend").put("prepend", "\u2581");
        ObjectNode rep = ns.addObject().put("type", "Replace");
        rep.putObject("pattern").put("String", " ");
        rep.put("content", "\u2581");
        root.putNull("pre_tokenizer");
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("SpecialToken").put("id", "<s>").put("type_id", 1);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode st = post.putObject("special_tokens").putObject("<s>");
        st.put("id", "<s>");
        st.putArray("ids").add(BOS);
        st.putArray("tokens").add("<s>");
        ObjectNode dec = root.putObject("decoder");
        dec.put("type", "Sequence");
        ArrayNode ds = dec.putArray("decoders");
        ObjectNode r = ds.addObject().put("type", "Replace");
        r.putObject("pattern").put("String", "\u2581");
        r.put("content", " ");
        ds.addObject().put("type", "ByteFallback");
        ds.addObject().put("type", "Fuse");
        ds.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.put("unk_token", "<unk>");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", true);
        model.put("byte_fallback", true);
        model.put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        for (int id = 0; id < pieces.length; id++) {
            vocab.put(hfPiece(id), id);
        }
        ArrayNode merges = model.putArray("merges");
        for (int[] m : merges()) {
            merges.addArray().add(hfPiece(m[0])).add(hfPiece(m[1]));
        }
        return root;
    }

    /**
     * Every pair of pieces whose concatenation is a piece, best merged score first (then by merged id, left id).
     *
     * @return {@code {left, right, merged}} ids
     */
    List<int[]> merges() {
        List<int[]> out = new ArrayList<>();
        for (int id = FIRST_PIECE; id < pieces.length; id++) {
            String p = pieces[id];
            int[] cps = p.codePoints().toArray();
            for (int k = 1; k < cps.length; k++) {
                String left = new String(cps, 0, k);
                String right = new String(cps, k, cps.length - k);
                Integer l = byText.get(left);
                Integer rt = byText.get(right);
                if (l != null && rt != null) {
                    out.add(new int[] {l, rt, id});
                }
            }
        }
        out.sort(Comparator.<int[]>comparingDouble(m -> -scores[m[2]]).thenComparingInt(m -> m[2])
                .thenComparingInt(m -> m[0]));
        return out;
    }

    /**
     * {@link #tokenizerJson()} as bytes.
     *
     * @return UTF-8 JSON
     */
    public byte[] tokenizerJsonBytes() {
        try {
            return new ObjectMapper().writeValueAsBytes(tokenizerJson());
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String quote(String s) {
        StringBuilder sb = new StringBuilder("\"");
        s.codePoints().forEach(c -> sb.append(c < 0x20 || c == 0x7f ? String.format("\\x%02x", c) : Character.toString(c)));
        return sb.append('"').toString();
    }

    @Override
    public String toString() {
        return "Llama2cTokenizer(" + source + ", " + pieces.length + " tokens)";
    }
}
