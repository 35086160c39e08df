package io.github.peft4j.examples.spam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The split is stratified 80/10/10 per group, byte-identical for a seed, duplicate-free and header-free. */
class SpamSplitTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private SpamData.Report prepare(Path tarball, Path out, long seed) throws Exception {
        SpamAssassinCorpus corpus = new SpamAssassinCorpus(tmp.resolve("cache"), "0.0.1",
                SpamAssassinCorpus.integrityOf(tarball), new FakeSpamPackage.CopyFetcher(tarball));
        return SpamData.prepare(corpus, new EmailParser(), out, seed);
    }

    private static List<JsonNode> lines(Path file) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            out.add(JSON.readTree(line));
        }
        return out;
    }

    private static Map<String, Integer> groupCounts(List<JsonNode> rows) {
        Map<String, Integer> m = new TreeMap<>();
        rows.forEach(r -> m.merge(r.get("group").asText(), 1, Integer::sum));
        return m;
    }

    @Test
    void stratifiedDeterministicAndHeaderFree() throws Exception {
        Path tgz = FakeSpamPackage.synthetic(40, 20, 10, 15, 20).write(tmp.resolve("p.tgz"));
        SpamData.Report r = prepare(tgz, tmp.resolve("a"), 42);
        assertEquals(105, r.emails());

        List<JsonNode> train = lines(tmp.resolve("a/train.jsonl"));
        List<JsonNode> val = lines(tmp.resolve("a/validation.jsonl"));
        List<JsonNode> test = lines(tmp.resolve("a/test.jsonl"));
        // 80/10/10 per group; held-out = round(0.1 n): 15 -> 2 (11/2/2)
        assertEquals(Map.of("easy-ham-1", 32, "easy-ham-2", 16, "hard-ham-1", 8, "spam-1", 11, "spam-2", 16), groupCounts(train));
        assertEquals(Map.of("easy-ham-1", 4, "easy-ham-2", 2, "hard-ham-1", 1, "spam-1", 2, "spam-2", 2), groupCounts(val));
        assertEquals(groupCounts(val), groupCounts(test));

        Set<String> ids = new HashSet<>();
        for (List<JsonNode> split : List.of(train, val, test)) {
            for (JsonNode row : split) {
                assertTrue(ids.add(row.get("id").asText()), "an id in two splits: " + row);
                assertEquals(List.of("text", "label", "group", "id"), iterable(row.fieldNames()));
                assertEquals(row.get("group").asText().startsWith("spam") ? "spam" : "ham", row.get("label").asText());
                String text = row.get("text").asText();
                assertTrue(text.matches("note \\S+ \\d+\nsynthetic body number \\d+ of \\S+"), text);
                for (String token : FakeSpamPackage.HEADER_TOKENS) {
                    assertFalse(text.contains(token), "header content '" + token + "' leaked into " + text);
                }
            }
        }
        assertEquals(105, ids.size());

        JsonNode stats = JSON.readTree(tmp.resolve("a/stats.json").toFile());
        assertEquals(83, stats.at("/splits/train/total").asInt());
        assertEquals(27, stats.at("/splits/train/spam").asInt());
        assertEquals(11, stats.at("/splits/test/total").asInt());
        assertEquals(2, stats.at("/splits/validation/groups/spam-2").asInt());
        assertEquals(42, stats.at("/seed").asInt());
        assertEquals(0, stats.at("/duplicates_dropped").asInt());

        // same seed, fresh output directory (and now a cached tarball): byte-identical files
        SpamData.Report again = prepare(tgz, tmp.resolve("b"), 42);
        assertTrue(again.tarball().cached());
        for (String f : List.of("train.jsonl", "validation.jsonl", "test.jsonl", "stats.json")) {
            assertArrayEquals(Files.readAllBytes(tmp.resolve("a").resolve(f)), Files.readAllBytes(tmp.resolve("b").resolve(f)), f);
        }
        // the order depends only on the ids, the seed and java.util.Random's specified generator: pinned here
        assertEquals(List.of("easy-ham-1/00012", "easy-ham-1/00037", "hard-ham-1/00001", "easy-ham-1/00002",
                "easy-ham-2/00007", "easy-ham-2/00005", "spam-1/00003", "spam-2/00012", "spam-2/00011", "easy-ham-1/00021",
                "spam-1/00001"), test.stream().map(n -> n.get("id").asText().replaceAll("\\.[0-9a-f]{32}$", "")).toList());
        // another seed: other members, same stratified counts
        prepare(tgz, tmp.resolve("c"), 7);
        List<JsonNode> test7 = lines(tmp.resolve("c/test.jsonl"));
        assertEquals(groupCounts(test), groupCounts(test7));
        assertNotEquals(test.stream().map(n -> n.get("id").asText()).sorted().toList(),
                test7.stream().map(n -> n.get("id").asText()).sorted().toList());
        String[] lines = r.table().split("\n");
        assertEquals(List.of("total", "83", "11", "11", "105"), List.of(lines[lines.length - 1].trim().split(" +")));
        assertEquals(List.of("spam-1", "11", "2", "2", "15"), List.of(lines[4].trim().split(" +")));
    }

    private static List<String> iterable(java.util.Iterator<String> it) {
        List<String> l = new ArrayList<>();
        it.forEachRemaining(l::add);
        return l;
    }

    @Test
    void exactDuplicateTextsAreDroppedBeforeSplittingKeepingTheFirstId() {
        List<SpamSplit.Row> rows = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            rows.add(new SpamSplit.Row(String.format("easy-ham-1/%05d", i), "easy-ham-1", "ham", "text " + i));
        }
        rows.add(new SpamSplit.Row("easy-ham-2/00001", "easy-ham-2", "ham", "text 3"));
        rows.add(new SpamSplit.Row("easy-ham-1/00099", "easy-ham-1", "ham", "text 4"));
        rows.add(new SpamSplit.Row("spam-1/00001", "spam-1", "spam", "text 5"));
        rows.add(new SpamSplit.Row("spam-1/00002", "spam-1", "spam", "only spam"));
        SpamSplit.Result r = SpamSplit.split(rows, 1);
        assertEquals(3, r.duplicatesRemoved());
        assertEquals(1, r.conflictingDuplicates());
        List<SpamSplit.Row> all = new ArrayList<>();
        r.splits().values().forEach(all::addAll);
        assertEquals(21, all.size());
        assertEquals(all.size(), all.stream().map(SpamSplit.Row::text).distinct().count());
        assertTrue(all.stream().anyMatch(x -> x.id().equals("easy-ham-1/00003")), "the first id of a duplicate is kept");
        assertFalse(all.stream().anyMatch(x -> x.id().equals("easy-ham-2/00001")));
        // spam-1 keeps one row: round(0.1 * 1) = 0 held out, so it trains
        assertEquals(Map.of("easy-ham-1", 16, "spam-1", 1), r.counts().get("train"));
        assertEquals(Map.of("easy-ham-1", 2), r.counts().get("validation"));
        assertEquals(Map.of("easy-ham-1", 2), r.counts().get("test"));
    }

    @Test
    void duplicateIdsAreRejected() {
        List<SpamSplit.Row> rows = List.of(new SpamSplit.Row("a/1", "spam-1", "spam", "x"),
                new SpamSplit.Row("a/1", "spam-1", "spam", "y"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> SpamSplit.split(rows, 0));
        assertTrue(e.getMessage().contains("a/1"));
    }
}
