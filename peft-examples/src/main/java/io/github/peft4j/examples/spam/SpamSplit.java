package io.github.peft4j.examples.spam;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.github.peft4j.io.AtomicFiles;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;

/**
 * A deterministic, stratified train / validation / test split (80 / 10 / 10 within every message group).
 *
 * <p>Determinism across machines and JVMs: rows are first sorted by their id (a string order), exact duplicate
 * texts are removed keeping the first id, then each group is shuffled by a Fisher-Yates loop driven by
 * {@link java.util.Random} (whose generator the Java API specifies) seeded with the user's seed mixed with the
 * group name's {@link String#hashCode()} (also specified). The first 80% of a group go to train, the next 10%
 * to validation and the rest to test (validation and test get {@code round(0.1 n)} each). Each split's rows are
 * then put in one more seeded shuffle, so groups are interleaved in the files.
 *
 * <p>Dropping duplicates before splitting means no text is in two splits (a test email seen in training would
 * inflate test accuracy); the number dropped, and how many of them carried the other label, is reported.
 */
public final class SpamSplit {
    /** The split names, in file order. */
    public static final List<String> SPLITS = List.of("train", "validation", "test");
    /** Fraction of each group for validation (the same for test). */
    public static final double HELD_OUT_FRACTION = 0.1;

    private SpamSplit() {}

    /**
     * One example.
     *
     * @param id stable id, e.g. {@code spam-1/00001.7848dde101aa985090474a91ec93fcf0}
     * @param group the message group
     * @param label "spam" or "ham"
     * @param text the model text (Subject and body)
     */
    public record Row(String id, String group, String label, String text) {}

    /**
     * A split.
     *
     * @param splits rows per split name ({@link #SPLITS} order)
     * @param duplicatesRemoved rows dropped because an earlier id had exactly the same text
     * @param conflictingDuplicates of those, how many had a label other than the kept row's
     */
    public record Result(Map<String, List<Row>> splits, int duplicatesRemoved, int conflictingDuplicates) {
        /**
         * Counts per split and group.
         *
         * @return split → (group → count), groups sorted
         */
        public Map<String, Map<String, Integer>> counts() {
            Map<String, Map<String, Integer>> out = new LinkedHashMap<>();
            for (String s : SPLITS) {
                Map<String, Integer> byGroup = new TreeMap<>();
                for (Row r : splits.get(s)) {
                    byGroup.merge(r.group(), 1, Integer::sum);
                }
                out.put(s, byGroup);
            }
            return out;
        }
    }

    /**
     * Splits rows.
     *
     * @param rows the examples (any order; ids must be unique)
     * @param seed the shuffle seed
     * @return the split
     * @throws IllegalArgumentException if two rows share an id
     */
    public static Result split(List<Row> rows, long seed) {
        List<Row> sorted = new ArrayList<>(rows);
        sorted.sort(Comparator.comparing(Row::id));
        for (int i = 1; i < sorted.size(); i++) {
            if (sorted.get(i).id().equals(sorted.get(i - 1).id())) {
                throw new IllegalArgumentException("duplicate id " + sorted.get(i).id());
            }
        }
        Map<String, Row> firstByText = new HashMap<>();
        Map<String, List<Row>> byGroup = new TreeMap<>();
        int dups = 0;
        int conflicts = 0;
        for (Row r : sorted) {
            Row kept = firstByText.putIfAbsent(r.text(), r);
            if (kept != null) {
                dups++;
                if (!kept.label().equals(r.label())) {
                    conflicts++;
                }
                continue;
            }
            byGroup.computeIfAbsent(r.group(), g -> new ArrayList<>()).add(r);
        }
        Map<String, List<Row>> splits = new LinkedHashMap<>();
        for (String s : SPLITS) {
            splits.put(s, new ArrayList<>());
        }
        for (Map.Entry<String, List<Row>> g : byGroup.entrySet()) {
            List<Row> list = g.getValue();
            shuffle(list, new Random(seed * 1_000_003L + g.getKey().hashCode()));
            int n = list.size();
            int held = (int) Math.round(n * HELD_OUT_FRACTION);
            int train = n - 2 * held;
            splits.get("train").addAll(list.subList(0, train));
            splits.get("validation").addAll(list.subList(train, train + held));
            splits.get("test").addAll(list.subList(train + held, n));
        }
        for (int i = 0; i < SPLITS.size(); i++) {
            shuffle(splits.get(SPLITS.get(i)), new Random(seed + 7919L * (i + 1)));
        }
        return new Result(splits, dups, conflicts);
    }

    /** Fisher-Yates with {@link Random#nextInt(int)}, written out so the order never depends on a JDK version. */
    private static <T> void shuffle(List<T> list, Random random) {
        for (int i = list.size() - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            T t = list.get(i);
            list.set(i, list.get(j));
            list.set(j, t);
        }
    }

    /**
     * Writes {@code train.jsonl}, {@code validation.jsonl} and {@code test.jsonl} (one JSON object per line with
     * {@code text}, {@code label}, {@code group}, {@code id}), each atomically.
     *
     * @param result the split
     * @param dir the output directory (created if missing)
     */
    public static void writeSplits(Result result, Path dir) {
        ObjectMapper mapper = new ObjectMapper();
        for (String s : SPLITS) {
            List<Row> rows = result.splits().get(s);
            AtomicFiles.write(dir.resolve(s + ".jsonl"), os -> {
                    try (JsonGenerator g = mapper.getFactory().createGenerator(os, JsonEncoding.UTF8)) {
                        g.setRootValueSeparator(null);
                        for (Row r : rows) {
                            g.writeStartObject();
                            g.writeStringField("text", r.text());
                            g.writeStringField("label", r.label());
                            g.writeStringField("group", r.group());
                            g.writeStringField("id", r.id());
                            g.writeEndObject();
                            g.writeRaw('\n');
                        }
                    }
                });
        }
    }

    /**
     * Writes a JSON object atomically, pretty-printed.
     *
     * @param file the target
     * @param value a JSON-serialisable value (maps, lists, numbers, strings)
     */
    public static void writeJson(Path file, Object value) {
        ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        AtomicFiles.write(file, os -> {
                os.write(mapper.writeValueAsString(value).getBytes(StandardCharsets.UTF_8));
                os.write('\n');
            });
    }
}
