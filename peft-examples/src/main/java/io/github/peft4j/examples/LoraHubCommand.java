package io.github.peft4j.examples;

import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Examples;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.lora.lorahub.LoraHub;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j lorahub}: LoRAHub's gradient-free search of composition weights over LoRA plug-ins on a few
 * examples ({@link LoraHub}); saves the composition as an ordinary LoRA adapter.
 */
@Command(name = "lorahub", sortOptions = false, separator = " ",
        description = {"Composes LoRA plug-ins for a new task from a few examples (LoRAHub) and saves the result.",
            "",
            "Searches weights w (start 0, bounds [-1.5, 1.5]) with CMA-ES for the composition A = sum w_i A_i,"
                + " B = sum w_i B_i (every saved tensor, modules_to_save copies included), minimising the few-shot loss"
                + " plus 0.05 * mean |w|, as the LoRAHub paper's code; --steps counts loss evaluations. The plug-ins must"
                + " have the same targets and rank. Shows a progress bar (stderr on a terminal, else the log), prints the"
                + " weights and loss, and writes --output as an ordinary adapter (adapter_config.json +"
                + " adapter_model.safetensors). Data: as train's --format. Java API: io.github.peft4j.lora.lorahub.LoraHub."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/train-parity/llama_lora_sgd",
            "  $ ./peft4j train --model $F/base --data $F/data.jsonl --method lora --r 4 --alpha 8 --target-modules q_proj,v_proj \\",
            "        --lr 0.01 --max-steps 20 --batch-size 2 --log-every 0 --seed 1 --output /tmp/gen/a",
            "  $ ./peft4j train ... --max-steps 5 --seed 2 --output /tmp/gen/b",
            "  $ ./peft4j lorahub --model $F/base --adapter a=/tmp/gen/a --adapter b=/tmp/gen/b --data $F/data.jsonl \\",
            "        --steps 20 --seed 1 --output /tmp/gen/hub",
            "  data: ...: 6 records, 6 examples, 0 skipped, 0 truncated",
            "  LoRAHub: 20 evaluations; weights a=-0.9034, b=-0.2915; few-shot loss 4.5134 (objective 4.5432; all weights 0: 4.8617)",
            "  saved adapter to /tmp/gen/hub",
            "  (A and B are both scaled by w, so a weight's sign matters only relative to the others'; docs/lorahub.md has the",
            "  spam demonstration)"})
final class LoraHubCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory.")
    Path model;

    @Option(names = "--adapter", required = true, paramLabel = "NAME=DIR", converter = AdapterSpec.Converter.class,
            description = "A LoRA plug-in (repeatable).")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--data", required = true, paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "The few-shot examples in the --format.")
    Path data;

    @Option(names = "--format", paramLabel = "FORMAT", converter = Choices.Formats.class, completionCandidates = Choices.Formats.class,
            description = "Data format, as train's: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String format = "pretokenized";

    @Option(names = "--tokenizer", paramLabel = "PATH", converter = Converters.ExistingPath.class,
            description = "tokenizer.json or its directory, for the text formats (default: the model directory).")
    Path tokenizer;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Truncate to N tokens (integer >= 0, 0 = no limit; default: ${DEFAULT-VALUE}).")
    int maxLength;

    @Option(names = "--steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Loss evaluations of the search (integer >= 1; default: ${DEFAULT-VALUE}, as LoRAHub's example).")
    int steps = LoraHub.DEFAULT_STEPS;

    @Option(names = "--seed", paramLabel = "S", description = "CMA-ES seed (integer; default: ${DEFAULT-VALUE}).")
    long seed = 42;

    @Option(names = "--batch-size", paramLabel = "B", converter = Converters.Positive.class,
            description = "Examples per forward pass (integer >= 1; default: ${DEFAULT-VALUE}).")
    int batchSize = 8;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "Where the composed adapter is written.")
    Path output;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        List<String> names = AdapterSpec.names("lorahub", adapters);
        if (Files.exists(output) && !Files.isDirectory(output)) {
            throw new CliException("lorahub: --output " + output + " exists and is not a directory");
        }
        try (TransformerModel m = AdapterSpec.loadBase(model, adapters)) {
            Tokenizer tok = format.equals("pretokenized") ? null : Tokenizer.load(tokenizer == null ? model : tokenizer);
            try {
                Examples examples = TrainCommand.readExamples(format, data, tok, null, m, maxLength, false, null, null,
                        BadLinePolicy.STOP);
                root.out.println("data: " + examples.report());
                PeftModel peft = AdapterSpec.open(m, adapters);
                int padId = tok == null ? 0 : tok.padTokenId().orElse(tok.eosTokenId().orElse(0));
                String hub = names.contains("lorahub") ? "lorahub_composition" : "lorahub";
                LoraHub.Result r = LoraHub.builder().setModel(peft).setPlugins(names).setExamples(examples).optSteps(steps)
                        .optSeed(seed).optBatchSize(batchSize).optCollator(new Collator(padId, false)).build().search(hub);
                peft.saveAdapter(hub, output);
                List<String> w = new ArrayList<>();
                for (int i = 0; i < names.size(); i++) {
                    w.add(String.format(Locale.ROOT, "%s=%.4f", names.get(i), r.weights()[i]));
                }
                root.out.printf(Locale.ROOT, "LoRAHub: %d evaluations; weights %s; few-shot loss %.4f (objective %.4f;"
                        + " all weights 0: %.4f)%n", r.evaluations(), String.join(", ", w), r.loss(), r.objective(), r.zeroLoss());
                root.out.println("saved adapter to " + output);
            } finally {
                if (tok != null) {
                    tok.close();
                }
            }
        }
        return 0;
    }
}
