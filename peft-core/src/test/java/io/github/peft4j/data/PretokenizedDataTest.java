package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PretokenizedDataTest {
    @Test
    void defaultsAndTruncation(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("p.jsonl");
        Files.writeString(f, """
                {"input_ids": [5, 6, 7]}
                {"input_ids": [5, 6, 7, 0], "attention_mask": [1, 1, 1, 0]}
                {"input_ids": [9, 8, 7], "labels": [-100, 8, 7]}
                {"input_ids": [1, 2, 3, 4, 5, 6], "attention_mask": [1, 1, 1, 1, 1, 1]}
                """);
        Examples ex = new PretokenizedData(128, 5, BadLinePolicy.STOP).read(f);
        assertEquals(4, ex.size());
        assertEquals(new Example(new int[] {5, 6, 7}, null, new int[] {5, 6, 7}, -1), ex.get(0));
        assertEquals(new Example(new int[] {5, 6, 7, 0}, new int[] {1, 1, 1, 0}, new int[] {5, 6, 7, -100}, -1),
                ex.get(1));
        assertArrayEquals(new int[] {-100, 8, 7}, ex.get(2).labels());
        assertNull(ex.get(2).attentionMask());
        assertArrayEquals(new int[] {1, 2, 3, 4, 5}, ex.get(3).inputIds());
        assertArrayEquals(new int[] {1, 1, 1, 1, 1}, ex.get(3).attentionMask());
        assertEquals(1, ex.report().truncated());
        assertEquals(new Examples.LengthStats(3, 3.75, 5, 15), Examples.lengthStats(ex));
    }

    @Test
    void malformedBothPolicies(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, String.join("\n",
                "{\"input_ids\": [1, 2]}",
                "{\"input_ids\": [1, 2}",
                "{\"attention_mask\": [1]}",
                "{\"input_ids\": []}",
                "{\"input_ids\": [1, \"2\"]}",
                "{\"input_ids\": [1, 2], \"attention_mask\": [1]}",
                "{\"input_ids\": [1, 2], \"attention_mask\": [1, 2]}",
                "{\"input_ids\": [1, 200]}",
                "{\"input_ids\": [1, 2], \"labels\": [-100, -5]}",
                "{\"input_ids\": 7}",
                "{\"input_ids\": [3]}"));
        PeftException stop = assertThrows(PeftException.class,
                () -> new PretokenizedData(128, 0, BadLinePolicy.STOP).read(f));
        assertEquals(f + ":2: ", stop.getMessage().substring(0, (f + ":2: ").length()));
        Examples ex = new PretokenizedData(128, 0, BadLinePolicy.SKIP).read(f);
        assertEquals(2, ex.size());
        assertEquals(11, ex.report().records());
        List<String> s = ex.report().skipped();
        assertEquals(9, s.size());
        assertEquals(f + ":3: missing field \"input_ids\" (expected an array of integers)", s.get(1));
        assertEquals(f + ":4: \"input_ids\" is empty", s.get(2));
        assertEquals(f + ":5: field \"input_ids\"[1] must be an integer, found \"2\"", s.get(3));
        assertEquals(f + ":6: \"attention_mask\" has 1 entries, \"input_ids\" 2", s.get(4));
        assertEquals(f + ":7: \"attention_mask\"[1] must be 0 or 1, found 2", s.get(5));
        assertEquals(f + ":8: \"input_ids\"[1] = 200 is out of range (expected 0..127)", s.get(6));
        assertEquals(f + ":9: \"labels\"[1] = -5 is out of range (expected 0..127 or -100)", s.get(7));
        assertEquals(f + ":10: field \"input_ids\" must be an array of integers, found NUMBER", s.get(8));
    }

    @Test
    void lineNumbersCountLeadingBlankLines(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("blank.jsonl");
        Files.writeString(f, "\n\r\n  \n{\"input_ids\": [1]}\n\n{\"input_ids\": [-1]}\n");
        PeftException e = assertThrows(PeftException.class, () -> new PretokenizedData(0, 0, BadLinePolicy.STOP).read(f));
        assertEquals(f + ":6: \"input_ids\"[0] = -1 is out of range (expected >= 0)", e.getMessage());
        Path a = dir.resolve("array.json");
        Files.writeString(a, "\n\n[{\"input_ids\": [1]},\n {\"input_ids\": \"x\"}]");
        PeftException ea = assertThrows(PeftException.class, () -> new PretokenizedData(0, 0, BadLinePolicy.STOP).read(a));
        assertEquals(a + ":4: field \"input_ids\" must be an array of integers, found STRING", ea.getMessage());
        Path broken = dir.resolve("broken.json");
        Files.writeString(broken, "[{\"input_ids\": [1]},\n {\"input_ids\": [2}]");
        PeftException eb = assertThrows(PeftException.class,
                () -> new PretokenizedData(0, 0, BadLinePolicy.SKIP).read(broken));
        assertTrue(eb.getMessage().startsWith(broken + ":2: not valid JSON"), eb.getMessage());
    }

    @Test
    void sequenceClassificationRecordsTakeOneClass(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("seq.jsonl");
        Files.writeString(f, String.join("\n",
                "{\"input_ids\": [5, 6, 7], \"label\": 2}",
                "{\"input_ids\": [5, 6, 7, 0], \"attention_mask\": [1, 1, 1, 0], \"labels\": 0}",
                "{\"input_ids\": [1, 2, 3, 4, 5, 6], \"label\": 1}",
                "{\"input_ids\": [1, 2]}",
                "{\"input_ids\": [1, 2], \"label\": 3}",
                "{\"input_ids\": [1, 2], \"labels\": [1, 1]}",
                "{\"input_ids\": [1, 2], \"label\": 1.5}",
                "{\"input_ids\": [1, 2], \"label\": -1}"));
        PretokenizedData reader = new PretokenizedData(128, 5, BadLinePolicy.SKIP, io.github.peft4j.model.TaskType.SEQ_CLS, 3);
        Examples ex = reader.read(f);
        assertEquals(3, ex.size());
        assertEquals(new Example(new int[] {5, 6, 7}, null, null, 2), ex.get(0));
        assertEquals(new Example(new int[] {5, 6, 7, 0}, new int[] {1, 1, 1, 0}, null, 0), ex.get(1));
        assertEquals(new Example(new int[] {1, 2, 3, 4, 5}, null, null, 1), ex.get(2));
        List<String> s = ex.report().skipped();
        assertEquals(List.of(
                f + ":4: missing field \"label\" (seq-cls takes one class per record: \"label\": int in 0..2)",
                f + ":5: \"label\" = 3 is out of range (the classifier has 3 labels: expected 0..2)",
                f + ":6: \"labels\" is a list, but seq-cls takes one class per record: \"label\": int in 0..2",
                f + ":7: field \"label\" must be an integer class, found 1.5",
                f + ":8: \"label\" = -1 is out of range (the classifier has 3 labels: expected 0..2)"), s);
        PeftException stop = assertThrows(PeftException.class, () -> new PretokenizedData(128, 0, BadLinePolicy.STOP,
                io.github.peft4j.model.TaskType.SEQ_CLS, 3).read(f));
        assertEquals(s.get(0), stop.getMessage());
    }

    @Test
    void tokenClassificationRecordsTakeOneClassPerToken(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("tok.jsonl");
        Files.writeString(f, String.join("\n",
                "{\"input_ids\": [5, 6, 7], \"labels\": [-100, 4, 0]}",
                "{\"input_ids\": [1, 2, 3, 4, 5, 6], \"labels\": [1, 2, 3, 4, 0, 1]}",
                "{\"input_ids\": [1, 2]}",
                "{\"input_ids\": [1, 2], \"labels\": [1]}",
                "{\"input_ids\": [1, 2], \"labels\": [1, 5]}",
                "{\"input_ids\": [1, 2], \"label\": 1}"));
        Examples ex = new PretokenizedData(128, 5, BadLinePolicy.SKIP, io.github.peft4j.model.TaskType.TOKEN_CLS, 5)
                .read(f);
        assertEquals(2, ex.size());
        assertEquals(Example.labelled(new int[] {5, 6, 7}, new int[] {-100, 4, 0}), ex.get(0));
        assertArrayEquals(new int[] {1, 2, 3, 4, 0}, ex.get(1).labels()); // cut with the ids
        assertEquals(List.of(
                f + ":3: missing field \"labels\" (token-cls takes \"labels\": [class or -100 per token])",
                f + ":4: \"labels\" has 1 entries, \"input_ids\" 2 (token-cls takes one class or -100 per token)",
                f + ":5: \"labels\"[1] = 5 is out of range (expected 0..4 or -100)",
                f + ":6: \"label\" is one class per record (seq-cls); token-cls takes \"labels\": [class or -100 per"
                        + " token]"), ex.report().skipped());
    }

    @Test
    void causalLmRecordsRejectAClassAndHeadlessModelsAreRefused(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("lm.jsonl");
        Files.writeString(f, "{\"input_ids\": [1, 2], \"label\": 1}\n");
        PeftException e = assertThrows(PeftException.class, () -> new PretokenizedData(128, 0, BadLinePolicy.STOP).read(f));
        assertTrue(e.getMessage().startsWith(f + ":1: \"label\" is a class for seq-cls"), e.getMessage());
        try (io.github.peft4j.model.TransformerModel encoder = io.github.peft4j.model.Models.load(
                io.github.peft4j.testing.Fixtures.root().resolveSibling("hf-peft-reverse").resolve("bert_encoder"))) {
            PeftException h = assertThrows(PeftException.class,
                    () -> PretokenizedData.forModel(encoder, 0, BadLinePolicy.STOP));
            assertTrue(h.getMessage().contains("BertModel has no head"), h.getMessage());
        }
        try (io.github.peft4j.model.TransformerModel tok = io.github.peft4j.model.Models.load(
                io.github.peft4j.testing.Fixtures.dir("bert_tokcls_lora").resolve("base"))) {
            Path t = dir.resolve("t.jsonl");
            Files.writeString(t, "{\"input_ids\": [1, 2], \"labels\": [4, 5]}\n");
            PeftException r = assertThrows(PeftException.class, () -> PretokenizedData.forModel(tok, 0,
                    BadLinePolicy.STOP).read(t));
            assertEquals(t + ":1: \"labels\"[1] = 5 is out of range (expected 0..4 or -100)", r.getMessage());
        }
    }
}
