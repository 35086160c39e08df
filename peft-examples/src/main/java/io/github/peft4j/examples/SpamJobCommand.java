package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.SpamJob;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j spam-job}: fine-tunes all-MiniLM-L6-v2 for spam vs ham with several methods and compares them
 * (see {@link SpamJob}); every option maps to a {@link SpamJob.Settings} setter.
 */
@Command(name = "spam-job", sortOptions = false, separator = " ",
        description = {"Spam vs ham on SpamAssassin: trains each method, compares them, writes docs/results.md.",
            "",
            "The README's main job (SpamJob.run): prepares the SpamAssassin split into <work>/data (as prepare-spam;"
                + " cached), imports the bundled all-MiniLM-L6-v2 into <work>/model (as import-onnx; cached), then trains"
                + " each method on BertForSequenceClassification (MiniLM has no pooler: pooler and classifier start from a"
                + " seeded random initialisation), evaluates it on the whole test split, saves what it trained under"
                + " <work>/runs/<method>/, prints the table, classifies --demo test emails with the LoRA adapter loaded back"
                + " from disk, and writes --results and --chart (training loss and validation accuracy of every method).",
            "",
            "Defaults: AdamW with linear decay after 10%% warmup; steps and learning rate per method probe=300/5e-3,"
                + " lora=300/3e-3, bitfit=200/5e-3, prompt=200/3e-2, full=200/1e-4; LoRA alpha 2r on query, key, value and"
                + " attention.output.dense.",
            "",
            "Rows beyond the default budget (--methods all, or by name): dora (the lora row with use_dora), qlora (the"
                + " lora row on the encoder quantised to NF4 + double quantisation while loading; its model bytes are in"
                + " its settings line), ptuning (P-tuning, MLP encoder, --virtual-tokens), pfeiffer (bottleneck adapter"
                + " seq_bn), houlsby (double_seq_bn), parallel (par_bn), unipelt (AdapterHub's UniPELT), adalora (AdaLoRA"
                + " from init_r = r to r/2, its final budget in the settings line), moe-lora (4 LoRA experts of rank r/2,"
                + " top 2 per token); the pooler and classifier in modules_to_save; each is loaded back from disk and"
                + " checked against the in-memory test scores. Defaults dora=200/3e-3, qlora=300/3e-3, ptuning=200/1e-2,"
                + " pfeiffer=200/1e-2, houlsby=200/1e-3, parallel=200/1e-3, unipelt=200/1e-3, adalora=200/3e-3,"
                + " moe-lora=200/3e-3 (docs/results-extended.md).",
            "",
            "Selective rows (also beyond the budget, reload-checked): ln-tuning (LN_TUNING), last-k (LAST_K, the last"
                + " quarter of the layers), sparse (SPARSE_MASK, 1%% smallest-magnitude entries), learned-mask"
                + " (DIFF_PRUNING on the attention); defaults 200 steps, lr 1e-2, 2e-4, 1e-3, 1e-3.",
            "",
            "Real output and the rationale of the settings: docs/results.md."},
        footer = {"Examples:",
            "  $ ./peft4j spam-job",
            "  $ ./peft4j spam-job --methods dora,ptuning,pfeiffer --results docs/results-extended.md \\",
            "        --chart docs/results-extended-curves.png",
            "  $ ./peft4j spam-job --methods lora,bitfit --steps lora=300,bitfit=200 --lr lora=1e-3 --results /tmp/r.md \\",
            "        --chart /tmp/r.png",
            "  $ ./peft4j train --model spam-job/model --data spam-job/data/train.jsonl --eval-data spam-job/data/validation.jsonl \\",
            "        --format classification --method lora --r 8 --alpha 16 --target-modules query,key,value,attention.output.dense \\",
            "        --max-length 64 --batch-size 16 --max-steps 300 --lr 3e-3 --metric accuracy \\",
            "        --modules-to-save pooler.dense,classifier --output lora-run",
            "  (the job's data and model directory work with train too; --modules-to-save pooler.dense trains and saves the",
            "  pooler, which MiniLM lacks; the classifier is always trained, as in HF PEFT)"})
final class SpamJobCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--work", paramLabel = "DIR", description = "Work directory: data, model and runs go under it (default: spam-job).")
    Path work;

    @Option(names = "--data", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Prepared split (train/validation/test.jsonl) to use instead of <work>/data.")
    Path data;

    @Option(names = "--model", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "A BERT model directory to use instead of the imported MiniLM in <work>/model.")
    Path model;

    @Option(names = "--methods", split = ",", paramLabel = "METHOD", converter = Choices.SpamMethods.class,
            completionCandidates = Choices.SpamMethods.class,
            description = "Methods to run, comma-separated, from ${COMPLETION-CANDIDATES} (all: every method; default:"
                    + " probe, lora, bitfit, prompt, full).")
    List<String> methods;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.Positive.class,
            description = "Tokens per email, special tokens included (integer >= 1; default: 64).")
    Integer maxLength;

    @Option(names = "--batch-size", paramLabel = "B", converter = Converters.Positive.class,
            description = "Examples per batch, training and evaluation (integer >= 1; default: 16).")
    Integer batchSize;

    @Option(names = "--train-examples", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "A stratified subset of the training split to sample batches from (integer >= 0, 0 = all; default: 0).")
    Integer trainExamples;

    @Option(names = "--eval-examples", paramLabel = "N", converter = Converters.Positive.class,
            description = "Stratified validation emails evaluated for the curves (integer >= 1; default: 96).")
    Integer evalExamples;

    @Option(names = "--steps", split = ",", paramLabel = "METHOD=N", converter = {MethodKey.class, Converters.Positive.class},
            description = "Optimizer steps per method, e.g. lora=300,full=200 (integers >= 1; repeatable).")
    Map<String, Integer> steps;

    @Option(names = "--lr", split = ",", paramLabel = "METHOD=X", converter = {MethodKey.class, Converters.PositiveNum.class},
            description = "Peak learning rate per method, e.g. lora=1e-3 (numbers > 0; repeatable).")
    Map<String, Double> lr;

    @Option(names = "--lora-r", paramLabel = "R", converter = Converters.Positive.class,
            description = "LoRA rank (integer >= 1; default: 8; alpha is 2r).")
    Integer loraR;

    @Option(names = "--virtual-tokens", paramLabel = "N", converter = Converters.Positive.class,
            description = "Virtual tokens of prompt tuning and P-tuning (integer >= 1; default: 10).")
    Integer virtualTokens;

    @Option(names = "--seed", paramLabel = "S", description = "Seed of data order, subsets and initialisation (integer; default: 42).")
    Long seed;

    @Option(names = "--demo", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Test emails to classify with the reloaded LoRA adapter (integer >= 0; default: 5).")
    Integer demo;

    @Option(names = "--results", paramLabel = "FILE", description = "The markdown report (default: docs/results.md).")
    Path results;

    @Option(names = "--chart", paramLabel = "FILE", description = "The PNG of the training curves (default: docs/results-curves.png).")
    Path chart;

    @Mixin
    HelpOption help;

    /** A {@code METHOD=} key of {@code --steps} and {@code --lr}. */
    static final class MethodKey extends Choices {
        MethodKey() {
            super(SpamJob.METHODS);
        }
    }

    @Override
    public Integer call() {
        SpamJob.Settings s = new SpamJob.Settings().command("./peft4j " + String.join(" ", root.argv));
        if (work != null) {
            s.work(work);
        }
        if (data != null) {
            s.data(data);
        }
        if (model != null) {
            s.model(model);
        }
        if (methods != null) {
            s.methods(methods);
        }
        if (maxLength != null) {
            s.maxLength(maxLength);
        }
        if (batchSize != null) {
            s.batchSize(batchSize);
        }
        if (trainExamples != null) {
            s.trainExamples(trainExamples);
        }
        if (evalExamples != null) {
            s.evalExamples(evalExamples);
        }
        if (loraR != null) {
            s.loraR(loraR);
        }
        if (virtualTokens != null) {
            s.virtualTokens(virtualTokens);
        }
        if (seed != null) {
            s.seed(seed);
        }
        if (demo != null) {
            s.demo(demo);
        }
        if (results != null) {
            s.results(results);
        }
        if (chart != null) {
            s.chart(chart);
        }
        if (steps != null) {
            steps.forEach(s::steps);
        }
        if (lr != null) {
            lr.forEach(s::lr);
        }
        SpamJob.run(s, root.out);
        return 0;
    }
}
