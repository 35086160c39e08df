package io.github.peft4j.examples.sft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Predicate;
import java.util.regex.Pattern;

/**
 * The sft-job's data, built from the two pinned packages (nothing of it is committed): Alpaca records
 * {@code {"task", "instruction", "input": "", "output"}} in JSON lines.
 * <ul>
 *   <li>{@code define}: "What does the word X mean?" → the definition of X's most frequent WordNet sense;</li>
 *   <li>{@code use}: "Use the word X in a sentence." → that sense's example sentence that contains X;</li>
 *   <li>{@code opinion} (closed, exact match): "Is the word X positive or negative?" → positive / negative, from the
 *       opinion lexicon, balanced;</li>
 *   <li>{@code pos} (closed, exact match): "Is the word X a noun or a verb?" → noun / verb, for lemmas WordNet lists
 *       under exactly one of the two (and not as an adjective), balanced.</li>
 * </ul>
 * Words are lowercase letters only, 3 to 12 long, one token of the model's vocabulary (so stories15M has seen them);
 * WordNet lemmas are taken most-tagged first. The split is by word (no word of a test file is in a training file),
 * in a seeded random order, so the same packages and sizes give byte-identical files.
 */
public final class SftData {
    /** Files written, in order; {@value #STATS} is written last and marks a complete directory. */
    public static final List<String> FILES = List.of("instruct-train.jsonl", "instruct-test.jsonl", "opinion-train.jsonl",
            "opinion-test.jsonl", "pos-train.jsonl", "pos-test.jsonl");
    /** The summary file. */
    public static final String STATS = "stats.json";
    /** The closed tasks' instructions. */
    public static final String OPINION = "Is the word %s positive or negative?";
    /** The part-of-speech instruction. */
    public static final String POS_Q = "Is the word %s a noun or a verb?";
    private static final Pattern WORD = Pattern.compile("[a-z]{3,12}");
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * How many records of each kind.
     *
     * @param instructTrain training words for define and use (each word gives up to one of each)
     * @param instructTest held-out words for define and use
     * @param closedTrain training words per closed task (half per label)
     * @param closedTest held-out words per closed task (half per label)
     * @param seed the split's seed
     */
    public record Sizes(int instructTrain, int instructTest, int closedTrain, int closedTest, long seed) {
        /** The job's default: 300 and 40 define/use words, 400 and 100 words per closed task, seed 42. */
        public static final Sizes DEFAULT = new Sizes(300, 40, 400, 100, 42);

        /**
         * @param s another seed
         * @return these sizes with that seed
         */
        public Sizes withSeed(long s) {
            return new Sizes(instructTrain, instructTest, closedTrain, closedTest, s);
        }

        /** @return this as JSON, recorded in {@value #STATS} */
        ObjectNode json() {
            return JSON.createObjectNode().put("instruct_train", instructTrain).put("instruct_test", instructTest)
                    .put("closed_train", closedTrain).put("closed_test", closedTest).put("seed", seed);
        }
    }

    /** One Alpaca record. */
    record Rec(String task, String instruction, String output) {
        ObjectNode json() {
            return JSON.createObjectNode().put("task", task).put("instruction", instruction).put("input", "")
                    .put("output", output);
        }
    }

    private SftData() {}

    /**
     * Whether {@code dir} holds a complete data set made with these sizes.
     *
     * @param dir the directory
     * @param sizes the sizes
     * @return true when it can be reused
     */
    public static boolean complete(Path dir, Sizes sizes) {
        Path stats = dir.resolve(STATS);
        if (!Files.isRegularFile(stats) || !FILES.stream().allMatch(f -> Files.isRegularFile(dir.resolve(f)))) {
            return false;
        }
        try {
            return JSON.readTree(stats.toFile()).path("sizes").toString().equals(sizes.json().toString());
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * Builds and writes the data set.
     *
     * @param wordnet WordNet's entries ({@link WordNet#read})
     * @param lexicon the opinion words
     * @param known whether a word is a single token of the model's vocabulary
     * @param sizes how many records
     * @param dir where to write ({@link #FILES}, then {@value #STATS})
     * @return the statistics written
     */
    public static JsonNode prepare(Map<String, List<WordNet.Entry>> wordnet, OpinionLexicon.Words lexicon,
            Predicate<String> known, Sizes sizes, Path dir) {
        Random r = new Random(sizes.seed());
        // define / use: per lemma the entry with the most tagged senses, most-tagged lemmas first
        Map<String, WordNet.Entry> best = new LinkedHashMap<>();
        for (List<WordNet.Entry> es : wordnet.values()) {
            for (WordNet.Entry e : es) {
                if (WORD.matcher(e.lemma()).matches() && known.test(e.lemma()) && usable(e)) {
                    best.merge(e.lemma(), e, (a, b) -> b.tagsenseCount() > a.tagsenseCount() ? b : a);
                }
            }
        }
        List<WordNet.Entry> lemmas = new ArrayList<>(best.values());
        lemmas.sort(Comparator.comparingInt((WordNet.Entry e) -> -e.tagsenseCount()).thenComparing(WordNet.Entry::lemma));
        int want = sizes.instructTrain() + sizes.instructTest();
        if (lemmas.size() < want) {
            throw new PeftException("sft data: only " + lemmas.size() + " usable WordNet lemmas; asked for " + want);
        }
        lemmas = new ArrayList<>(lemmas.subList(0, want));
        Collections.shuffle(lemmas, r);
        List<Rec> instructTest = instruct(lemmas.subList(0, sizes.instructTest()));
        List<Rec> instructTrain = instruct(lemmas.subList(sizes.instructTest(), want));
        Collections.shuffle(instructTrain, r);
        // opinion
        Set<String> pos = new HashSet<>(lexicon.positive());
        Set<String> neg = new HashSet<>(lexicon.negative());
        List<String> p = lexicon.positive().stream().filter(w -> !neg.contains(w) && WORD.matcher(w).matches()
                && known.test(w)).sorted().toList();
        List<String> n = lexicon.negative().stream().filter(w -> !pos.contains(w) && WORD.matcher(w).matches()
                && known.test(w)).sorted().toList();
        List<List<Rec>> opinion = closed("opinion", OPINION, p, "positive", n, "negative", sizes, r);
        // part of speech: noun-only vs verb-only lemmas
        Set<String> nouns = lemmaSet(wordnet.get("noun"));
        Set<String> verbs = lemmaSet(wordnet.get("verb"));
        Set<String> adjs = lemmaSet(wordnet.get("adj"));
        List<String> nounOnly = tagged(wordnet.get("noun")).stream().filter(w -> !verbs.contains(w) && !adjs.contains(w)
                && WORD.matcher(w).matches() && known.test(w)).sorted().toList();
        List<String> verbOnly = tagged(wordnet.get("verb")).stream().filter(w -> !nouns.contains(w) && !adjs.contains(w)
                && WORD.matcher(w).matches() && known.test(w)).sorted().toList();
        List<List<Rec>> partOfSpeech = closed("pos", POS_Q, nounOnly, "noun", verbOnly, "verb", sizes, r);
        try {
            Files.createDirectories(dir);
            Files.deleteIfExists(dir.resolve(STATS));
        } catch (IOException e) {
            throw new PeftException("cannot create " + dir + ": " + e.getMessage(), e);
        }
        List<List<Rec>> all = List.of(instructTrain, instructTest, opinion.get(0), opinion.get(1), partOfSpeech.get(0),
                partOfSpeech.get(1));
        ObjectNode stats = JSON.createObjectNode();
        stats.set("sizes", sizes.json());
        ObjectNode counts = stats.putObject("records");
        for (int i = 0; i < FILES.size(); i++) {
            write(dir.resolve(FILES.get(i)), all.get(i));
            counts.put(FILES.get(i), all.get(i).size());
        }
        stats.put("usable_wordnet_lemmas", best.size()).put("opinion_words", p.size() + n.size())
                .put("noun_only", nounOnly.size()).put("verb_only", verbOnly.size());
        AtomicFiles.writeString(dir.resolve(STATS), stats.toPrettyString() + "\n");
        return stats;
    }

    /** A first sense with a short definition. */
    private static boolean usable(WordNet.Entry e) {
        if (e.senses().isEmpty()) {
            return false;
        }
        String d = e.senses().get(0).definition();
        int words = d.isEmpty() ? 0 : d.split(" +").length;
        return words >= 2 && words <= 14 && !d.contains("\"");
    }

    private static List<Rec> instruct(List<WordNet.Entry> lemmas) {
        List<Rec> out = new ArrayList<>();
        for (WordNet.Entry e : lemmas) {
            WordNet.Gloss g = e.senses().get(0);
            out.add(new Rec("define", "What does the word " + e.lemma() + " mean?", g.definition()));
            Pattern whole = Pattern.compile("(?i)\\b" + e.lemma() + "\\b");
            for (String ex : g.examples()) {
                int words = ex.split(" +").length;
                if (words >= 3 && words <= 16 && whole.matcher(ex).find()) {
                    String s = Character.toUpperCase(ex.charAt(0)) + ex.substring(1);
                    out.add(new Rec("use", "Use the word " + e.lemma() + " in a sentence.",
                            s.matches(".*[.!?]$") ? s : s + "."));
                    break;
                }
            }
        }
        return out;
    }

    /** Balanced train and test lists of a two-label task, word-disjoint. */
    private static List<List<Rec>> closed(String task, String question, List<String> a, String aLabel, List<String> b,
            String bLabel, Sizes sizes, Random r) {
        int half = (sizes.closedTrain() + sizes.closedTest()) / 2;
        if (a.size() < half || b.size() < half) {
            throw new PeftException("sft data: task " + task + " has " + a.size() + " " + aLabel + " and " + b.size() + " "
                    + bLabel + " words; " + half + " of each are needed");
        }
        List<String> as = new ArrayList<>(a);
        List<String> bs = new ArrayList<>(b);
        Collections.shuffle(as, r);
        Collections.shuffle(bs, r);
        int testHalf = sizes.closedTest() / 2;
        List<Rec> test = new ArrayList<>();
        List<Rec> train = new ArrayList<>();
        for (int i = 0; i < half; i++) {
            List<Rec> to = i < testHalf ? test : train;
            to.add(new Rec(task, String.format(question, as.get(i)), aLabel));
            to.add(new Rec(task, String.format(question, bs.get(i)), bLabel));
        }
        Collections.shuffle(train, r);
        return List.of(train, test);
    }

    private static Set<String> lemmaSet(List<WordNet.Entry> es) {
        Set<String> s = new HashSet<>();
        es.forEach(e -> s.add(e.lemma()));
        return s;
    }

    private static List<String> tagged(List<WordNet.Entry> es) {
        return es.stream().filter(e -> e.tagsenseCount() > 0).map(WordNet.Entry::lemma).toList();
    }

    private static void write(Path file, List<Rec> recs) {
        StringBuilder sb = new StringBuilder();
        for (Rec r : recs) {
            sb.append(r.json().toString()).append('\n');
        }
        AtomicFiles.writeString(file, sb.toString());
    }

    /**
     * Reads a data file back.
     *
     * @param file a JSON lines file written by {@link #prepare}
     * @return the records: task, instruction, output
     */
    public static List<String[]> read(Path file) {
        List<String[]> out = new ArrayList<>();
        try {
            int line = 0;
            for (String l : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                line++;
                if (l.isBlank()) {
                    continue;
                }
                JsonNode n = JSON.readTree(l);
                if (!n.path("instruction").isTextual() || !n.path("output").isTextual()) {
                    throw new PeftException(file + ": line " + line + " is not an Alpaca record (instruction, output)");
                }
                out.add(new String[] {n.path("task").asText(""), n.get("instruction").asText(), n.get("output").asText()});
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
        return out;
    }
}
