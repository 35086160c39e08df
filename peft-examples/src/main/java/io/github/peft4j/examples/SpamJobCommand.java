package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.SpamJob;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Set;

/**
 * {@code peft4j spam-job}: fine-tunes all-MiniLM-L6-v2 for spam vs ham with several methods and compares them
 * (see {@link SpamJob}).
 */
final class SpamJobCommand {
    /** The option summary for the CLI usage text. */
    static final String USAGE = String.join("\n",
            "  spam-job [--work DIR] [--data DIR] [--model DIR] [--methods probe,lora,bitfit,prompt,full]",
            "         [--max-length N] [--batch-size B] [--train-examples N] [--eval-examples N] [--steps m=N,...]",
            "         [--lr m=X,...] [--lora-r R] [--virtual-tokens N] [--seed S] [--demo N] [--results FILE] [--chart FILE]",
            "         spam vs ham on SpamAssassin: trains each method, prints the comparison table, writes docs/results.md");

    private SpamJobCommand() {}

    /**
     * Runs the command.
     *
     * @param argv the whole command line ({@code spam-job ...})
     * @param out standard output
     */
    static void run(String[] argv, PrintStream out) {
        Args a = new Args("spam-job", argv, 1, Set.of("--work", "--data", "--model", "--methods", "--max-length",
                "--batch-size", "--train-examples", "--eval-examples", "--steps", "--lr", "--lora-r", "--virtual-tokens",
                "--seed", "--demo", "--results", "--chart"), Set.of());
        SpamJob.Settings s = new SpamJob.Settings().command("./peft4j " + String.join(" ", argv));
        if (a.optional("--work") != null) {
            s.work(Path.of(a.optional("--work")));
        }
        if (a.optional("--data") != null) {
            s.data(a.existingDir("--data"));
        }
        if (a.optional("--model") != null) {
            s.model(a.existingDir("--model"));
        }
        if (a.optional("--methods") != null) {
            s.methods(Arrays.stream(a.optional("--methods").split(",")).map(String::trim).filter(x -> !x.isEmpty()).toList());
        }
        if (a.optional("--max-length") != null) {
            s.maxLength(integer(a, "--max-length"));
        }
        if (a.optional("--batch-size") != null) {
            s.batchSize(integer(a, "--batch-size"));
        }
        if (a.optional("--train-examples") != null) {
            s.trainExamples(integer(a, "--train-examples"));
        }
        if (a.optional("--eval-examples") != null) {
            s.evalExamples(integer(a, "--eval-examples"));
        }
        if (a.optional("--lora-r") != null) {
            s.loraR(integer(a, "--lora-r"));
        }
        if (a.optional("--virtual-tokens") != null) {
            s.virtualTokens(integer(a, "--virtual-tokens"));
        }
        if (a.optional("--seed") != null) {
            s.seed(integer(a, "--seed"));
        }
        if (a.optional("--demo") != null) {
            s.demo(integer(a, "--demo"));
        }
        if (a.optional("--results") != null) {
            s.results(Path.of(a.optional("--results")));
        }
        if (a.optional("--chart") != null) {
            s.chart(Path.of(a.optional("--chart")));
        }
        if (a.optional("--steps") != null) {
            for (Map.Entry<String, String> e : SpamJob.perMethod(a.optional("--steps")).entrySet()) {
                s.steps(e.getKey(), parseInt("--steps " + e.getKey(), e.getValue()));
            }
        }
        if (a.optional("--lr") != null) {
            for (Map.Entry<String, String> e : SpamJob.perMethod(a.optional("--lr")).entrySet()) {
                try {
                    s.lr(e.getKey(), Double.parseDouble(e.getValue()));
                } catch (NumberFormatException x) {
                    throw new CliException("spam-job: --lr " + e.getKey() + "='" + e.getValue() + "' is not a number");
                }
            }
        }
        SpamJob.run(s, out);
    }

    private static int integer(Args a, String key) {
        return parseInt(key, a.optional(key));
    }

    private static int parseInt(String what, String v) {
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new CliException("spam-job: " + what + " '" + v + "' is not an integer");
        }
    }

}
