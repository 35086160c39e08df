package io.github.peft4j.examples.spam;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The data-preparation step: get the verified corpus tarball (cached), parse every email to Subject + body,
 * split it and write {@code train.jsonl}, {@code validation.jsonl}, {@code test.jsonl} and {@code stats.json}
 * (written last, so its presence marks a complete output).
 */
public final class SpamData {
    private static final Logger LOG = LoggerFactory.getLogger(SpamData.class);

    private SpamData() {}

    /**
     * What one preparation did.
     *
     * @param tarball the tarball used and whether it came from the cache
     * @param emails emails in the package
     * @param md5Mismatches emails whose bytes differ from the MD5 the package records (kept)
     * @param unparseable emails the MIME parser rejected (dropped)
     * @param empty emails with neither subject nor body text (dropped)
     * @param split the split written
     */
    public record Report(SpamAssassinCorpus.Tarball tarball, int emails, int md5Mismatches, int unparseable, int empty,
            SpamSplit.Result split) {
        /**
         * A table of counts per group (rows) and split (columns), with totals.
         *
         * @return the table, lines separated by '\n'
         */
        public String table() {
            Map<String, Map<String, Integer>> counts = split.counts();
            TreeSet<String> groups = new TreeSet<>();
            counts.values().forEach(m -> groups.addAll(m.keySet()));
            StringBuilder sb = new StringBuilder(String.format("%-12s %6s %10s %6s %6s%n", "group", "train",
                    "validation", "test", "total"));
            int[] totals = new int[SpamSplit.SPLITS.size() + 1];
            for (String g : groups) {
                sb.append(String.format("%-12s", g));
                int sum = 0;
                for (int i = 0; i < SpamSplit.SPLITS.size(); i++) {
                    int c = counts.get(SpamSplit.SPLITS.get(i)).getOrDefault(g, 0);
                    sb.append(String.format(i == 1 ? " %10d" : " %6d", c));
                    sum += c;
                    totals[i] += c;
                }
                totals[SpamSplit.SPLITS.size()] += sum;
                sb.append(String.format(" %6d%n", sum));
            }
            sb.append(String.format("%-12s %6d %10d %6d %6d", "total", totals[0], totals[1], totals[2], totals[3]));
            return sb.toString();
        }

        /**
         * The content of {@code stats.json}.
         *
         * @param packageSpec the package name and version
         * @param seed the split seed
         * @return a JSON-serialisable map
         */
        public Map<String, Object> stats(String packageSpec, long seed) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("package", packageSpec);
            m.put("seed", seed);
            m.put("emails", emails);
            m.put("md5_mismatches_kept", md5Mismatches);
            m.put("unparseable_dropped", unparseable);
            m.put("empty_dropped", empty);
            m.put("duplicates_dropped", split.duplicatesRemoved());
            m.put("duplicates_with_other_label", split.conflictingDuplicates());
            Map<String, Object> splits = new LinkedHashMap<>();
            Map<String, Map<String, Integer>> counts = split.counts();
            for (String s : SpamSplit.SPLITS) {
                Map<String, Object> one = new LinkedHashMap<>();
                List<SpamSplit.Row> rows = split.splits().get(s);
                one.put("total", rows.size());
                one.put("spam", rows.stream().filter(r -> r.label().equals("spam")).count());
                one.put("ham", rows.stream().filter(r -> r.label().equals("ham")).count());
                one.put("groups", counts.get(s));
                splits.put(s, one);
            }
            m.put("splits", splits);
            return m;
        }
    }

    /**
     * Runs the whole preparation.
     *
     * @param corpus where the tarball comes from
     * @param parser the email parser
     * @param outputDir where the split files go
     * @param seed the split seed
     * @return what was done
     */
    public static Report prepare(SpamAssassinCorpus corpus, EmailParser parser, Path outputDir, long seed) {
        SpamAssassinCorpus.Tarball tarball = corpus.tarball();
        List<SpamAssassinCorpus.RawEmail> raws = SpamAssassinCorpus.read(tarball.tarball());
        List<SpamSplit.Row> rows = new ArrayList<>(raws.size());
        int unparseable = 0;
        int empty = 0;
        int md5Mismatches = 0;
        for (SpamAssassinCorpus.RawEmail raw : raws) {
            if (!raw.md5Ok()) {
                md5Mismatches++;
            }
            String text;
            try {
                text = parser.parse(raw.raw()).text();
            } catch (IOException e) {
                LOG.warn("{}: cannot parse, dropped: {}", raw.id(), e.getMessage());
                unparseable++;
                continue;
            }
            if (text.isEmpty()) {
                LOG.debug("{}: no subject and no text body, dropped", raw.id());
                empty++;
                continue;
            }
            rows.add(new SpamSplit.Row(raw.id(), raw.group(), raw.label(), text));
        }
        SpamSplit.Result split = SpamSplit.split(rows, seed);
        Report report = new Report(tarball, raws.size(), md5Mismatches, unparseable, empty, split);
        SpamSplit.writeSplits(split, outputDir);
        SpamSplit.writeJson(outputDir.resolve("stats.json"),
                report.stats(SpamAssassinCorpus.PACKAGE + "@" + corpus.version(), seed));
        return report;
    }
}
