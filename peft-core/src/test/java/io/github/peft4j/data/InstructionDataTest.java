package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.testing.TestTokenizers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class InstructionDataTest {
    private static final int BOS = 0;
    private static final int EOS = 1;
    private static final int IM_START = 3;
    private static final int IM_END = 4;
    static Tokenizer tok;

    @BeforeAll
    static void load() {
        tok = Tokenizer.load(TestTokenizers.bpe());
    }

    @AfterAll
    static void close() {
        tok.close();
    }

    private static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    private static int[] ignore(int n) {
        int[] a = new int[n];
        Arrays.fill(a, Example.IGNORE);
        return a;
    }

    @Test
    void alpacaPromptIsIgnoredAndResponseLearned(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("alpaca.jsonl");
        Files.writeString(f, """
                {"instruction": "say hi", "input": "", "output": "hi there"}

                {"instruction": "name a fox", "input": "the quick brown fox", "output": "quick fox"}
                """);
        Examples ex = InstructionData.builder(tok).build().read(f);
        assertEquals(2, ex.size());
        assertEquals(2, ex.report().records());
        assertEquals(0, ex.report().skipped().size());

        String prompt0 = "Below is a task. Write a response that carries out the task.\n\n### Instruction:\nsay hi\n\n"
                + "### Response:\n";
        int[] p0 = tok.encode(prompt0, true);
        int[] r0 = tok.encode("hi there", false);
        Example e0 = ex.get(0);
        assertEquals(BOS, p0[0]);
        assertArrayEquals(concat(p0, r0, new int[] {EOS}), e0.inputIds());
        assertArrayEquals(concat(ignore(p0.length), r0, new int[] {EOS}), e0.labels());
        // the learned part decodes to exactly the response: the boundary is exact
        int[] learned = Arrays.stream(e0.labels()).filter(l -> l != Example.IGNORE).toArray();
        assertEquals("hi there", tok.decode(learned, true));
        assertEquals(prompt0, tok.decode(Arrays.copyOf(e0.inputIds(), p0.length), true));

        String prompt1 = PromptTemplate.ALPACA.render("name a fox", "the quick brown fox");
        assertTrue(prompt1.contains("### Input:\nthe quick brown fox\n\n### Response:\n"));
        Example e1 = ex.get(1);
        int[] p1 = tok.encode(prompt1, true);
        assertArrayEquals(concat(ignore(p1.length), tok.encode("quick fox", false), new int[] {EOS}), e1.labels());
        // every prompt position ignored, every response position labelled with its own id
        for (int i = 0; i < e1.length(); i++) {
            assertEquals(i < p1.length ? Example.IGNORE : e1.inputIds()[i], e1.labels()[i], "position " + i);
        }
    }

    @Test
    void customTemplateAndNoEos() {
        InstructionData d = InstructionData.builder(tok).template(PromptTemplate.of("Q: {instruction} {input}\nA: "))
                .appendEos(false).build();
        // text from the data is never re-scanned for placeholders
        Example e = d.alpaca("what is {input}?", "", "no");
        int[] p = tok.encode("Q: what is {input}? \nA: ", true);
        assertArrayEquals(concat(p, tok.encode("no", false)), e.inputIds());
        assertArrayEquals(concat(ignore(p.length), tok.encode("no", false)), e.labels());
    }

    @Test
    void chatLearnsOnlyAssistantTurns() {
        InstructionData d = InstructionData.builder(tok).build();
        Example e = d.chat(List.of(new ChatTemplate.Message("system", "be short"),
                new ChatTemplate.Message("user", "hello"), new ChatTemplate.Message("assistant", "hi"),
                new ChatTemplate.Message("user", "bye"), new ChatTemplate.Message("assistant", "ok")));
        int[] s1 = tok.encode("<|im_start|>system\nbe short<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
                + "<|im_start|>assistant\n", true);
        int[] a1 = tok.encode("hi<|im_end|>\n", false);
        int[] s2 = tok.encode("<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n", false);
        int[] a2 = tok.encode("ok<|im_end|>\n", false);
        assertArrayEquals(concat(s1, a1, s2, a2, new int[] {EOS}), e.inputIds());
        assertArrayEquals(concat(ignore(s1.length), a1, ignore(s2.length), a2, new int[] {EOS}), e.labels());
        // the special markers are single tokens and the end-of-turn marker is learned
        assertEquals(BOS, s1[0]);
        assertEquals(IM_START, s1[1]);
        assertEquals(IM_END, a1[a1.length - 2]);
        assertEquals(a1.length + a2.length + 1, IntStream.of(e.labels()).filter(l -> l != Example.IGNORE).count());
    }

    @Test
    void malformedRecordsBothPolicies(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("bad.jsonl");
        Files.writeString(f, String.join("\n",
                "{\"instruction\": \"a\", \"output\": \"b\"}",
                "{\"instruction\": \"a\", \"output\": ",
                "{\"instruction\": \"a\"}",
                "{\"instruction\": 3, \"output\": \"b\"}",
                "{\"instruction\": \"a\", \"output\": \"\"}",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}",
                "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}",
                "[1, 2]",
                "{\"instruction\": \"c\", \"output\": \"d\"}") + "\n");
        PeftException stop = assertThrows(PeftException.class, () -> InstructionData.builder(tok).build().read(f));
        assertTrue(stop.getMessage().startsWith(f + ":2: not valid JSON"), stop.getMessage());

        Examples ex = InstructionData.builder(tok).policy(BadLinePolicy.SKIP).build().read(f);
        assertEquals(2, ex.size());
        assertEquals(9, ex.report().records());
        List<String> s = ex.report().skipped();
        assertEquals(7, s.size(), s.toString());
        assertTrue(s.get(0).startsWith(f + ":2: not valid JSON"), s.get(0));
        assertEquals(f + ":3: missing field \"output\" (expected a string)", s.get(1));
        assertEquals(f + ":4: field \"instruction\" must be a string, found NUMBER", s.get(2));
        assertEquals(f + ":5: field \"output\" is empty", s.get(3));
        assertEquals(f + ":6: \"messages\" has no assistant turn to learn", s.get(4));
        assertEquals(f + ":7: messages[0].role must be system, user or assistant, found \"bot\"", s.get(5));
        assertEquals(f + ":8: expected a JSON object, found ARRAY", s.get(6));
    }

    @Test
    void truncationAndPromptTooLong(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("t.jsonl");
        Files.writeString(f, "{\"instruction\": \"x\", \"output\": \"the quick brown fox jumps over the lazy dog\"}\n");
        Example full = InstructionData.builder(tok).build().alpaca("x", "", "the quick brown fox jumps over the lazy dog");
        int prompt = (int) IntStream.of(full.labels()).filter(l -> l == Example.IGNORE).count();
        int max = prompt + 3;
        Examples ex = InstructionData.builder(tok).maxLength(max).build().read(f);
        assertEquals(1, ex.report().truncated());
        assertArrayEquals(Arrays.copyOf(full.inputIds(), max), ex.get(0).inputIds());
        assertArrayEquals(Arrays.copyOf(full.labels(), max), ex.get(0).labels());

        PeftException e = assertThrows(PeftException.class,
                () -> InstructionData.builder(tok).maxLength(prompt).build().read(f));
        assertTrue(e.getMessage().startsWith(f + ":1: no response token to learn"), e.getMessage());
    }

    @Test
    void packingKeepsLabelsAndIgnoresBoundaries() {
        List<Example> in = List.of(Example.labelled(new int[] {10, 11, 12}, new int[] {-100, 11, 12}),
                Example.labelled(new int[] {20, 21}, new int[] {-100, 21}),
                Example.tokens(30, 31, 32, 33),
                Example.labelled(new int[] {40}, new int[] {40}));
        List<Example> packed = InstructionData.pack(in, 6);
        assertEquals(2, packed.size());
        assertArrayEquals(new int[] {10, 11, 12, 20, 21}, packed.get(0).inputIds());
        assertArrayEquals(new int[] {-100, 11, 12, -100, 21}, packed.get(0).labels());
        assertArrayEquals(new int[] {30, 31, 32, 33, 40}, packed.get(1).inputIds());
        assertArrayEquals(new int[] {-100, 31, 32, 33, -100}, packed.get(1).labels());
        assertThrows(IllegalArgumentException.class, () -> InstructionData.pack(in, 3));
    }

    @Test
    void packedRead(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("p.jsonl");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 6; i++) {
            sb.append("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\","
                    + " \"content\": \"yes\"}]}\n");
        }
        Files.writeString(f, sb);
        Example one = InstructionData.builder(tok).build().read(f).get(0);
        Examples packed = InstructionData.builder(tok).maxLength(3 * one.length()).pack(true).build().read(f);
        assertEquals(6, packed.report().records());
        assertEquals(2, packed.size());
        assertEquals(2, packed.report().examples());
        Example p = packed.get(0);
        assertEquals(3 * one.length(), p.length());
        for (int k = 0; k < 3; k++) {
            int[] ids = Arrays.copyOfRange(p.inputIds(), k * one.length(), (k + 1) * one.length());
            int[] labels = Arrays.copyOfRange(p.labels(), k * one.length(), (k + 1) * one.length());
            assertArrayEquals(one.inputIds(), ids);
            assertEquals(Example.IGNORE, labels[0]);
            assertArrayEquals(Arrays.copyOfRange(one.labels(), 1, one.length()),
                    Arrays.copyOfRange(labels, 1, one.length()));
        }
    }

    @Test
    void jsonArrayFileWithLineNumbers(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("alpaca_data.json");
        Files.writeString(f, "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"a\"}\n]\n");
        Examples ex = InstructionData.builder(tok).policy(BadLinePolicy.SKIP).build().read(f);
        assertEquals(1, ex.size());
        assertEquals(List.of(f + ":3: missing field \"output\" (expected a string)"), ex.report().skipped());
    }
}
