package io.github.peft4j.examples;

import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code peft4j info}: what a model directory (and adapters) holds. */
@Command(name = "info", sortOptions = false, separator = " ",
        description = {"Prints a model's architecture, dtype, shape and parameter counts, the adapters and the"
                + " trainable report.",
            "",
            "Java API: Models.load, PeftModel.loadAdapter, PeftModel.trainableReport."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_lora",
            "  $ ./peft4j info --model $F/base --adapter $F/adapter",
            "  architecture:   LlamaForCausalLM (model_type llama)",
            "  task:           CAUSAL_LM",
            "  checkpoint:     torch_dtype float32, loaded as float32",
            "  shape:          layers 2, hidden 64, heads 4 (kv 2), vocab 128",
            "  base params:    90,432",
            "  adapter:        LORA from peft-core/src/test/resources/fixtures/hf-peft/llama_lora/adapter, 1,792 parameters (loaded for inference)",
            "  methods:        [...",
            "  trainable params: 0 || all params: 92,224 || trainable%: 0.0000",
            "  $ ./peft4j info --model $F/base --adapter a=$F/adapter --adapter b=$F/adapter",
            "  adapter:        a: LORA from peft-core/src/test/resources/fixtures/hf-peft/llama_lora/adapter, 1,792 parameters (loaded for inference)",
            "  adapter:        b: LORA from peft-core/src/test/resources/fixtures/hf-peft/llama_lora/adapter, 1,792 parameters (loaded for inference)",
            "  active:         [a, b]",
            "  trainable params: 0 || all params: 94,016 || trainable%: 0.0000"})
final class InfoCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory.")
    Path model;

    @Option(names = "--adapter", paramLabel = "[NAME=]DIR", converter = AdapterSpec.Converter.class,
            description = "Adapter directory to load under NAME (default: default). Repeatable.")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        AdapterSpec.names("info", adapters);
        PrintStream out = root.out;
        HfConfig config = HfConfig.read(model);
        try (TransformerModel m = AdapterSpec.loadBase(model, adapters)) {
            long baseParams = m.numParameters();
            PeftModel peft = AdapterSpec.open(m, adapters);
            out.println("architecture:   " + m.architecture() + " (model_type " + config.modelType() + ")");
            out.println("task:           " + m.task());
            out.println("checkpoint:     torch_dtype " + config.string("torch_dtype", "unspecified") + ", loaded as " + m.dtype());
            out.println("shape:          layers " + m.numLayers() + ", hidden " + m.hiddenSize() + ", heads "
                    + m.numAttentionHeads() + " (kv " + m.numKeyValueHeads() + "), vocab " + m.vocabSize());
            out.printf("base params:    %,d%n", baseParams);
            for (AdapterSpec s : adapters) {
                Adapter ad = peft.adapter(s.name());
                out.printf("adapter:        %s%s from %s, %,d parameters (loaded for inference)%n",
                        s.name().equals(PeftModel.DEFAULT) ? "" : s.name() + ": ", ad.config().peftType(), s.dir(),
                        ad.parameters().values().stream().mapToLong(Param::numel).sum());
            }
            if (adapters.size() > 1) {
                out.println("active:         " + peft.activeAdapters());
            }
            out.println("methods:        " + PeftMethods.types());
            out.println(peft.trainableReport());
        }
        return 0;
    }
}
