package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

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
}
