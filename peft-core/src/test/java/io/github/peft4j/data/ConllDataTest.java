package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.github.peft4j.PeftException;
import io.github.peft4j.testing.TestTokenizers;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConllDataTest {
    static Tokenizer tok;
    private static final int I = Example.IGNORE;

    @BeforeAll
    static void load() {
        tok = Tokenizer.load(TestTokenizers.wordpiece());
    }

    @AfterAll
    static void close() {
        tok.close();
    }

    @Test
    void firstSubTokenLabelled(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("train.conll");
        Files.writeString(f, """
                -DOCSTART- -X- -X- O

                John NNP B-NP B-PER
                lives VBZ B-VP O
                in IN B-PP O
                London NNP B-NP B-LOC
                . . O O

                quickest JJ O O
                foxes NNS O B-MISC
                """);
        Examples ex = ConllData.of(tok, 0, null, BadLinePolicy.STOP).read(f);
        assertEquals(List.of("B-LOC", "B-MISC", "B-PER", "O"), ex.labelMap().labels());
        assertEquals(2, ex.size());
        assertEquals(2, ex.report().records());
        // word ids of "John lives in London ." are [-1,0,1,1,1,1,1,2,3,3,3,3,3,3,4,-1] (Python, expected.json)
        Example e = ex.get(0);
        assertArrayEquals(new int[] {2, 102, 38, 71, 84, 67, 81, 89, 38, 77, 76, 66, 77, 76, 13, 3}, e.inputIds());
        assertArrayEquals(new int[] {I, 2, 3, I, I, I, I, 3, 0, I, I, I, I, I, 3, I}, e.labels());
        // "quickest foxes": word ids [-1,0,0,0,0,0,0,0,0,1,1,1,-1]
        assertArrayEquals(new int[] {2, 43, 83, 71, 65, 73, 67, 81, 82, 100, 67, 81, 3}, ex.get(1).inputIds());
        assertArrayEquals(new int[] {I, 3, I, I, I, I, I, I, I, 1, I, I, I}, ex.get(1).labels());

        // truncation keeps [SEP]
        Examples cut = ConllData.of(tok, 7, null, BadLinePolicy.STOP).read(f);
        assertArrayEquals(new int[] {2, 102, 38, 71, 84, 67, 3}, cut.get(0).inputIds());
        assertArrayEquals(new int[] {I, 2, 3, I, I, I, I}, cut.get(0).labels());
        assertEquals(2, cut.report().truncated());
    }

    @Test
    void malformedSentencesBothPolicies(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("bad.conll");
        Files.writeString(f, "John B-PER\nlives\n\nMary B-PER\nmet X-VERB\n\nPeter B-PER\nin O\n");
        PeftException stop = assertThrows(PeftException.class, () -> ConllData.of(tok, 0, null, BadLinePolicy.STOP)
                .read(f));
        assertEquals(f + ":2: expected a token and its label separated by whitespace, found one column \"lives\"",
                stop.getMessage());
        Examples ex = ConllData.of(tok, 0, null, BadLinePolicy.SKIP).read(f);
        assertEquals(1, ex.size());
        assertEquals(3, ex.report().records());
        assertEquals(List.of(f + ":2: expected a token and its label separated by whitespace, found one column"
                + " \"lives\"", f + ":5: label \"X-VERB\" is not a BIO tag (O, B-<type> or I-<type>)"),
                ex.report().skipped());
        assertEquals(List.of("B-PER", "O"), ex.labelMap().labels());

        // a label unknown to a given map names its line
        Path eval = dir.resolve("eval.conll");
        Files.writeString(eval, "Peter B-PER\nin O\nBerlin B-LOC\n");
        PeftException unknown = assertThrows(PeftException.class, () -> ConllData.of(tok, 0, null,
                BadLinePolicy.STOP).withLabels(ex.labelMap()).read(eval));
        assertEquals(eval + ":3: label \"B-LOC\" is not one of the known labels [B-PER, O]", unknown.getMessage());
    }
}
