package io.github.peft4j.examples.sft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.data.Llama2cTokenizer;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.TinyModels;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sft-job's wiring offline: a tiny random Llama with a llama2.c-style tokenizer, synthetic WordNet entries and
 * opinion words, every method, the proxy-tuning and continual-learning sections, a few steps each.
 */
class SftJobTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Map<String, List<WordNet.Entry>> wordnet;
    static OpinionLexicon.Words lexicon;

    static String name(String prefix, int i) {
        return prefix + (char) ('a' + i / 26 % 26) + (char) ('a' + i % 26);
    }

    static byte[] tokenizerBin(String[] pieces) {
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(16);
        String[] special = {"<unk>", "\n<s>\n", "\n</s>\n"};
        for (int i = 0; i < 259 + pieces.length; i++) {
            String t = i < 3 ? special[i] : i < 259 ? Character.toString(i - 3) : pieces[i - 259];
            byte[] s = t.getBytes(StandardCharsets.UTF_8);
            b.putFloat(i < 259 ? 0f : t.equals(" ") ? -1e9f : -(i - 259));
            b.putInt(s.length);
            b.put(s);
        }
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }

    @BeforeAll
    static void setUp() throws Exception {
        List<String> pieces = new ArrayList<>(List.of(" ", " positive", " negative", " noun", " verb", "#", ":", "?", "."));
        for (char c = 'a'; c <= 'z'; c++) {
            pieces.add(Character.toString(c));
            pieces.add(" " + c);
        }
        Llama2cTokenizer tok = Llama2cTokenizer.parse(tokenizerBin(pieces.toArray(new String[0])), 259 + pieces.size(), "tiny");
        model = tmp.resolve("model");
        Engine.getInstance().setRandomSeed(5);
        try (TransformerModel m = Models.random(TinyModels.config("{\"model_type\":\"llama\",\"hidden_size\":64,"
                + "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                + "\"vocab_size\":" + tok.vocabSize() + ",\"max_position_embeddings\":256,\"tie_word_embeddings\":true,"
                + "\"bos_token_id\":1,\"eos_token_id\":2,\"rms_norm_eps\":1e-5,\"initializer_range\":0.05}"), Device.cpu(),
                DataType.FLOAT32, TaskType.CAUSAL_LM)) {
            m.save(model);
        }
        Files.write(model.resolve("tokenizer.json"), tok.tokenizerJsonBytes());
        Files.writeString(model.resolve("tokenizer_config.json"), "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}");
        List<WordNet.Entry> nouns = new ArrayList<>();
        List<WordNet.Entry> verbs = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            nouns.add(new WordNet.Entry(name("n", i), "noun", 12 - i, List.of(new WordNet.Gloss("a thing called "
                    + name("n", i), List.of("the " + name("n", i) + " is here")))));
            verbs.add(new WordNet.Entry(name("v", i), "verb", 1, List.of(new WordNet.Gloss("to do " + name("v", i), List.of()))));
        }
        wordnet = Map.of("noun", nouns, "verb", verbs, "adj", List.of());
        List<String> pos = new ArrayList<>();
        List<String> neg = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            pos.add(name("p", i));
            neg.add(name("q", i));
        }
        lexicon = new OpinionLexicon.Words(pos, neg);
    }

    @Test
    void exactMatchScoresTheLabelsTokensAtTheStartOfAnAnswer() throws Exception {
        assertEquals("positive", SftEval.normalize("  Positive STR positive STR"));
        assertEquals("negative", SftEval.normalize("negative.\nnegative"));
        assertEquals("", SftEval.normalize("   "));
        try (Tokenizer tok = Tokenizer.load(model)) {
            // " positive" is one token of the test vocabulary; "id" and "as" are letters glued to it
            SftEval.Answer glued = answer(tok, " positiveidas");
            SftEval.Answer punct = answer(tok, " positive, yes");
            SftEval.Answer other = answer(tok, " negative");
            SftEval.Answer longer = answer(tok, " pos");
            assertTrue(glued.tokens().length >= 3, "the glued answer is several tokens");
            assertTrue(SftEval.matches(tok, glued, "positive"));
            assertTrue(SftEval.matches(tok, punct, "positive"));
            assertFalse(SftEval.matches(tok, other, "positive"));
            assertFalse(SftEval.matches(tok, longer, "positive"));
            assertFalse(SftEval.matches(tok, new SftEval.Answer("", new int[0]), "positive"));
            assertEquals(0.5, SftEval.exactMatch(tok, List.of(glued, other), List.of("positive", "positive")));
        }
    }

    private static SftEval.Answer answer(Tokenizer tok, String text) {
        int[] ids = tok.encode(text, false);
        return new SftEval.Answer(tok.decode(ids, true).strip(), ids);
    }

    @Test
    void dataIsDeterministicWordDisjointAndBalanced() throws Exception {
        SftData.Sizes sizes = new SftData.Sizes(8, 4, 8, 4, 3);
        Path a = tmp.resolve("data-a");
        Path b = tmp.resolve("data-b");
        JsonNode stats = SftData.prepare(wordnet, lexicon, w -> true, sizes, a);
        SftData.prepare(wordnet, lexicon, w -> true, sizes, b);
        for (String f : SftData.FILES) {
            assertEquals(Files.readString(a.resolve(f)), Files.readString(b.resolve(f)), f);
        }
        assertTrue(SftData.complete(a, sizes));
        assertTrue(!SftData.complete(a, new SftData.Sizes(8, 4, 8, 4, 4)));
        // 8 + 4 define records, and a use record for each noun (verbs have no example)
        List<String[]> train = SftData.read(a.resolve("instruct-train.jsonl"));
        List<String[]> test = SftData.read(a.resolve("instruct-test.jsonl"));
        assertEquals(8, train.stream().filter(r -> r[0].equals("define")).count());
        assertEquals(4, test.stream().filter(r -> r[0].equals("define")).count());
        for (String[] r : test) {
            String word = r[1].split(" ")[r[0].equals("define") ? 4 : 3];
            assertTrue(train.stream().noneMatch(t -> t[1].contains(" " + word + " ")), word);
        }
        List<String[]> op = SftData.read(a.resolve("opinion-test.jsonl"));
        assertEquals(2, op.stream().filter(r -> r[2].equals("positive")).count());
        assertEquals(2, op.stream().filter(r -> r[2].equals("negative")).count());
        List<String[]> opTrain = SftData.read(a.resolve("opinion-train.jsonl"));
        assertEquals(8, opTrain.size());
        assertTrue(opTrain.stream().noneMatch(t -> op.stream().anyMatch(o -> o[1].equals(t[1]))));
        List<String[]> pos = SftData.read(a.resolve("pos-train.jsonl"));
        assertEquals(4, pos.stream().filter(r -> r[2].equals("noun")).count());
        assertTrue(pos.stream().allMatch(r -> r[2].equals("noun") == r[1].split(" ")[3].startsWith("n")));
        assertEquals(24, stats.get("usable_wordnet_lemmas").asInt());
        assertEquals("The " + "n", test.stream().filter(r -> r[0].equals("use")).findFirst().orElseThrow()[2].substring(0, 5));
    }

    @Test
    void everyMethodAndBothSectionsRunOnATinyModel() throws Exception {
        Path work = tmp.resolve("work");
        SftData.prepare(wordnet, lexicon, w -> true, new SftData.Sizes(8, 4, 8, 4, 42), work.resolve("data"));
        SftJob.Settings s = new SftJob.Settings().work(work).model(model).methods(List.of(SftJob.ALL)).steps(2)
                .batchSize(4).maxLength(48).sizes(new SftData.Sizes(8, 4, 8, 4, 42)).proxy(1, 2, 2).proxyStories(8, 8).continualSteps(2)
                .results(work.resolve("r.md")).chart(work.resolve("c.png")).command("sft-job (test)");
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        SftJob.Result r = SftJob.run(s, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertTrue(out.contains("data: cached in"), out);
        assertEquals(1 + SftJob.METHODS.size(), r.rows().size());
        assertEquals("base", r.rows().get(0).method());
        assertEquals(0, r.rows().get(0).trainable());
        // LoRA r 8 on q (64->64), k, v (64->32), o (64->64), gate, up (64->128), down (128->64), 2 layers
        long lora = 2 * 8L * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 2 * (64 + 128) + (128 + 64));
        for (SftJob.Row row : r.rows()) {
            assertTrue(Double.isFinite(row.loss()) && row.loss() > 0, row.toString());
            assertTrue(row.exactMatch() >= 0 && row.exactMatch() <= 1);
            assertEquals(3, row.samples().size());
            switch (row.method()) {
                case "lora", "qlora" -> assertEquals(lora, row.trainable(), row.method());
                case "full" -> assertEquals(row.total(), row.trainable());
                case "base" -> { }
                default -> assertTrue(row.trainable() > 0 && row.trainable() < row.total(), row.method());
            }
            assertTrue(r.table().contains("| " + row.method() + " "), row.method());
        }
        assertTrue(r.proxy().contains("proxy-tuned M, alpha 1") && r.proxy().contains("M fine-tuned directly"), r.proxy());
        Matcher m = Pattern.compile("gave (\\d+) of (\\d+) answers identical").matcher(r.continual());
        assertTrue(m.find(), r.continual());
        assertEquals(m.group(2), m.group(1), "mixed-batch answers must equal the one-plug-in-at-a-time answers");
        assertEquals(8, Integer.parseInt(m.group(2))); // 4 + 4 held-out words of the two closed tasks
        for (String task : ContinualSection.TASKS) {
            assertTrue(Files.isRegularFile(work.resolve("continual/plugins/" + task + "/adapter_model.safetensors")), task);
        }
        String md = Files.readString(work.resolve("r.md"));
        assertTrue(md.contains("## Proxy-tuning") && md.contains("## Continual learning") && md.contains("![training curves](c.png)"));
        assertTrue(Files.size(work.resolve("c.png")) > 1000);
        assertTrue(Files.isRegularFile(work.resolve("runs/full/model/model.safetensors")));
        assertTrue(Files.isRegularFile(work.resolve("runs/lora/adapter/adapter_config.json")));
    }
}
