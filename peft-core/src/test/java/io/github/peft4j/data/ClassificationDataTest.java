package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.testing.TestTokenizers;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ClassificationDataTest {
    static Tokenizer tok;

    @BeforeAll
    static void load() {
        tok = Tokenizer.load(TestTokenizers.wordpiece());
    }

    @AfterAll
    static void close() {
        tok.close();
    }

    @Test
    void csvQuotingCommasNewlinesAndDoubledQuotes() throws Exception {
        Csv csv = new Csv(new StringReader("text,label\r\n\"a, b\",x\n\"line1\nline2\",y\n\"say \"\"hi\"\"\",\"\"\n"
                + "plain,z"));
        assertEquals(new Csv.Row(1, List.of("text", "label")), csv.next());
        assertEquals(new Csv.Row(2, List.of("a, b", "x")), csv.next());
        assertEquals(new Csv.Row(3, List.of("line1\nline2", "y")), csv.next());
        assertEquals(new Csv.Row(5, List.of("say \"hi\"", "")), csv.next());
        assertEquals(new Csv.Row(6, List.of("plain", "z")), csv.next());
        assertNull(csv.next());
        Csv unclosed = new Csv(new StringReader("a\n\"never closed,x\n"));
        assertEquals(new Csv.Row(1, List.of("a")), unclosed.next());
        BadRecord open = assertThrows(BadRecord.class, unclosed::next);
        assertTrue(open.getMessage().startsWith("line 2: a quoted field"), open.getMessage());
        BadRecord after = assertThrows(BadRecord.class, () -> new Csv(new StringReader("\"a\"b,c\n")).next());
        assertTrue(after.getMessage().startsWith("line 1: unexpected character 'b'"), after.getMessage());
    }

    @Test
    void csvFileWithSortedLabelMapAndTruncation(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("train.csv");
        Files.writeString(f, "id,text,label\n1,\"John lives in London, quick\",spam\n2,\"hello\nworld\",ham\n"
                + "3,the quick brown fox jumps over the lazy dog,ham\n");
        Examples ex = ClassificationData.builder(tok).maxLength(8).build().read(f);
        assertEquals(List.of("ham", "spam"), ex.labelMap().labels());
        assertEquals(3, ex.size());
        assertEquals(1, ex.get(0).label());
        assertEquals(0, ex.get(1).label());
        assertArrayEquals(cut("John lives in London, quick", 8), ex.get(0).inputIds());
        assertArrayEquals(cut("hello\nworld", 8), ex.get(1).inputIds());
        // cut to 8 keeping [CLS] at the start and [SEP] at the end
        int[] plain = tok.encode("the quick brown fox jumps over the lazy dog", false);
        assertArrayEquals(new int[] {2, plain[0], plain[1], plain[2], plain[3], plain[4], plain[5], 3},
                ex.get(2).inputIds());
        assertEquals(3, ex.report().truncated());
        assertEquals(8, ex.get(1).length());
    }

    /** [CLS] + the first max-2 content tokens + [SEP], or the whole encoding when it fits. */
    private static int[] cut(String text, int max) {
        int[] full = tok.encode(text, true);
        if (full.length <= max) {
            return full;
        }
        int[] plain = tok.encode(text, false);
        int[] out = new int[max];
        out[0] = 2;
        System.arraycopy(plain, 0, out, 1, max - 2);
        out[max - 1] = 3;
        return out;
    }

    @Test
    void jsonLinesWithGivenLabelsAndUnknownLabel(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("eval.jsonl");
        Files.writeString(f, "{\"text\": \"hello world\", \"label\": 1}\n{\"text\": \"john\", \"label\": \"0\"}\n"
                + "{\"text\": \"mary\", \"label\": 7}\n");
        LabelMap map = new LabelMap(List.of("0", "1"));
        ClassificationData reader = ClassificationData.builder(tok).labels(map).build();
        PeftException e = assertThrows(PeftException.class, () -> reader.read(f));
        assertEquals(f + ":3: label \"7\" is not one of the known labels [0, 1]", e.getMessage());
        Examples ex = ClassificationData.builder(tok).labels(map).policy(BadLinePolicy.SKIP).build().read(f);
        assertEquals(2, ex.size());
        assertEquals(Example.classified(tok.encode("hello world", true), 1), ex.get(0));
        assertEquals(Example.classified(tok.encode("john", true), 0), ex.get(1));
        assertEquals(List.of(f + ":3: label \"7\" is not one of the known labels [0, 1]"), ex.report().skipped());
        // numeric labels sort numerically
        assertEquals(List.of("2", "10"), LabelMap.sorted(List.of("10", "2", "10")).labels());
        assertEquals(List.of("a", "b"), reader.withLabels(new LabelMap(List.of("a", "b"))).read(
                write(dir, "{\"text\": \"x\", \"label\": \"b\"}\n")).labelMap().labels());
    }

    private static Path write(Path dir, String s) throws Exception {
        Path f = dir.resolve("x.jsonl");
        Files.writeString(f, s);
        return f;
    }

    @Test
    void malformedRowsBothPolicies(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("bad.csv");
        Files.writeString(f, "text,label\ngood,a\n\"\",a\nmissing label,\ntoo,many,fields\nfine,b\n");
        PeftException stop = assertThrows(PeftException.class, () -> ClassificationData.builder(tok).build().read(f));
        assertEquals(f + ":3: column \"text\" is empty", stop.getMessage());
        Examples ex = ClassificationData.builder(tok).policy(BadLinePolicy.SKIP).build().read(f);
        assertEquals(2, ex.size());
        assertEquals(5, ex.report().records());
        assertEquals(List.of(f + ":3: column \"text\" is empty", f + ":4: column \"label\" is empty",
                f + ":5: expected 2 fields as in the header, found 3"), ex.report().skipped());
        Path j = dir.resolve("bad.jsonl");
        Files.writeString(j, "{\"text\": \"\", \"label\": \"a\"}\n{\"text\": \"x\", \"label\": [1]}\n{\"text\": \"x\"}\n");
        Examples jx = ClassificationData.builder(tok).policy(BadLinePolicy.SKIP).build().read(j);
        assertEquals(0, jx.size());
        assertEquals(List.of(j + ":1: field \"text\" is empty",
                j + ":2: field \"label\" must be a string or integer label, found ARRAY",
                j + ":3: missing field \"label\" (expected a string or integer label)"), jx.report().skipped());
        Path h = dir.resolve("header.csv");
        Files.writeString(h, "sentence,label\nx,a\n");
        PeftException header = assertThrows(PeftException.class, () -> ClassificationData.builder(tok).build().read(h));
        assertTrue(header.getMessage().startsWith(h + ":1: the header [sentence, label] must name"), header.getMessage());
        assertEquals(1, ClassificationData.builder(tok).textField("sentence").build().read(h).size());
    }
}
