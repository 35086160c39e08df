package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.LoraHubDemo;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code peft4j lorahub-demo}: LoRAHub on the SpamAssassin data ({@link LoraHubDemo}). */
@Command(name = "lorahub-demo", sortOptions = false, separator = " ",
        description = {"LoRAHub on the spam data: plug-ins from corpus slices composed for hard ham vs spam from a few emails.",
            "",
            "Trains three LoRA plug-ins (the spam-job lora row's config) on slices of the training split by corpus group:"
                + " c2002 = easy-ham-1 vs spam-1, c2003 = easy-ham-2 vs spam-2, cross = easy-ham-1 vs spam-2; then composes"
                + " them with LoRAHub for the target task hard ham vs spam from --shots validation emails (half hard ham),"
                + " and compares on every test email of hard-ham-1 and the spam groups: each plug-in alone, uniform weights,"
                + " LoRAHub, and a LoRA trained on the same few-shot emails. Writes the table into --results (between"
                + " lorahub-demo markers). Data and model as spam-job's (prepare-spam, import-onnx)."},
        footer = {"Examples:",
            "  $ ./peft4j lorahub-demo --data spam-job/data --model spam-job/model --work /tmp/hub --results docs/lorahub.md",
            "  (docs/lorahub.md has the measured table and what it shows)"})
final class LoraHubDemoCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--data", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Prepared spam split (train/validation/test.jsonl), as prepare-spam writes it.")
    Path data;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "The BERT model directory (import-onnx's MiniLM).")
    Path model;

    @Option(names = "--work", paramLabel = "DIR", description = "Where plug-ins and the composition are saved (default: lorahub-demo).")
    Path work;

    @Option(names = "--plugin-steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Optimizer steps per plug-in (integer >= 1; default: 80).")
    Integer pluginSteps;

    @Option(names = "--shots", paramLabel = "N", converter = Converters.Positive.class,
            description = "Few-shot emails of the target task (integer >= 2; default: 32).")
    Integer shots;

    @Option(names = "--hub-steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "LoRAHub's loss evaluations (integer >= 1; default: 40).")
    Integer hubSteps;

    @Option(names = "--few-shot-steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Steps of the LoRA trained on the few-shot emails (integer >= 1; default: 40).")
    Integer fewShotSteps;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.Positive.class,
            description = "Tokens per email, special tokens included (integer >= 1; default: 64).")
    Integer maxLength;

    @Option(names = "--test-spam", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Spam test emails of the target task, a seeded subset (integer >= 0, 0 = all 180; default: 0);"
                    + " every hard-ham test email is kept.")
    Integer testSpam;

    @Option(names = "--seed", paramLabel = "S", description = "Seed (integer; default: 42).")
    Long seed;

    @Option(names = "--results", paramLabel = "FILE", description = "Markdown file to write the table into (default: none).")
    Path results;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        LoraHubDemo.Settings s = new LoraHubDemo.Settings();
        s.data = data;
        s.model = model;
        if (work != null) {
            s.work = work;
        }
        if (pluginSteps != null) {
            s.pluginSteps = pluginSteps;
        }
        if (shots != null) {
            if (shots < 2) {
                throw new CliException("lorahub-demo: --shots must be >= 2 (half hard ham, half spam), got " + shots);
            }
            s.shots = shots;
        }
        if (hubSteps != null) {
            s.hubSteps = hubSteps;
        }
        if (fewShotSteps != null) {
            s.fewShotSteps = fewShotSteps;
        }
        if (maxLength != null) {
            s.maxLength = maxLength;
        }
        if (testSpam != null) {
            s.testSpam = testSpam;
        }
        if (seed != null) {
            s.seed = seed;
        }
        s.results = results;
        s.command = "./peft4j " + String.join(" ", root.argv);
        LoraHubDemo.run(s, root.out);
        return 0;
    }
}
