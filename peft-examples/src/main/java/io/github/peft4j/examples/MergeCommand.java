package io.github.peft4j.examples;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import io.github.peft4j.io.AtomicFiles;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j merge}: merges an adapter into the base weights and writes a normal Hugging Face checkpoint
 * ({@code config.json}, {@code model.safetensors} in fp32, plus the model directory's tokenizer and generation
 * files). The checkpoint is written into a temporary sibling directory and renamed into place, so the output is
 * never half-written. An existing non-empty output directory is an error unless {@code --force}, which replaces it.
 */
@Command(name = "merge", sortOptions = false, separator = " ",
        description = {"Merges adapters into the base weights and writes a normal Hugging Face checkpoint.",
            "",
            "Writes config.json, model.safetensors (fp32; a 4-bit base gives a bnb-4bit checkpoint unless --dense), plus generation_config.json and the tokenizer files"
                + " (tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model, vocab.json,"
                + " merges.txt, vocab.txt, added_tokens.json) copied from the model directory when present. Everything is"
                + " written into a hidden temporary directory next to the output and renamed into place, so the output is"
                + " never half-written. An existing non-empty output is an error unless --force, which replaces it (the"
                + " old directory is moved aside and deleted only after the new one is in place). Adapters that cannot"
                + " merge (prompt learning) fail before anything is written. Java API: PeftModel.mergeAndUnload,"
                + " TransformerModel.save."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_generate",
            "  $ ./peft4j merge --model $F/base --adapter $F/adapter --output /tmp/gen/merged",
            "  merged LORA adapter peft-core/src/test/resources/fixtures/hf-peft/llama_generate/adapter into LlamaForCausalLM (90,432 parameters); wrote /tmp/gen/merged",
            "  $ ls /tmp/gen/merged",
            "  config.json  generation_config.json  model.safetensors",
            "  $ ./peft4j merge --model $F/base --adapter $F/adapter --output /tmp/gen/merged",
            "  peft4j: merge: --output /tmp/gen/merged is not empty (use --force to replace it)",
            "  $ ./peft4j merge --model $F/base --adapter $F/adapter --output /tmp/gen/merged --force",
            "  merged LORA adapter ...",
            "  $ echo '{\"input_ids\": [[47, 83, 38, 53, 76, 116, 24, 121]]}' > /tmp/gen/one.json",
            "  $ ./peft4j generate --model /tmp/gen/merged --input /tmp/gen/one.json --max-new-tokens 10",
            "  {\"generated_ids\":[[65,4,4,4,4,4,4,4,4,4]]}",
            "  (the base + adapter ids of generate's first example: the merged checkpoint computes the same logits)"})
final class MergeCommand implements Callable<Integer> {
    /** Files copied from the model directory when present. */
    static final List<String> COPIED = List.of("generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json");

    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory.")
    Path model;

    @Option(names = "--adapter", required = true, paramLabel = "[NAME=]DIR", converter = AdapterSpec.Converter.class,
            description = "Adapter directory to merge (NAME: default). Repeatable: all given adapters are merged.")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "The new model directory.")
    Path outputOption;

    @Option(names = "--force", description = "Replace a non-empty --output.")
    boolean force;

    @Option(names = "--dense", description = "A 4-bit base (a bnb-4bit checkpoint): dequantise it first and write a dense"
            + " fp32 checkpoint with the exact merge. Without it, the adapters are merged into the 4-bit weights as HF PEFT"
            + " does (dequantise, add, requantise: outputs then differ by the rounding error) and a bnb-4bit checkpoint is"
            + " written.")
    boolean dense;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        AdapterSpec.names("merge", adapters);
        Path output = outputOption.toAbsolutePath().normalize();
        if (Files.exists(output) && !Files.isDirectory(output)) {
            throw new CliException("merge: --output " + output + " exists and is not a directory");
        }
        if (!force && nonEmpty(output)) {
            throw new CliException("merge: --output " + output + " is not empty (use --force to replace it)");
        }
        if (output.equals(model.toAbsolutePath().normalize())) {
            throw new CliException("merge: --output must differ from --model");
        }
        Path tmp = null;
        try (TransformerModel m = AdapterSpec.loadBase(model, adapters)) {
            int dequantised = dense ? io.github.peft4j.model.Quantization.dequantize(m) : 0;
            if (dense && dequantised == 0) {
                throw new CliException("merge: --dense: " + model + " has no 4-bit layers (its config.json has no"
                        + " quantization_config); drop --dense");
            }
            PeftModel peft = AdapterSpec.open(m, adapters);
            String type = adapters.stream().map(a -> peft.adapter(a.name()).config().peftType()).distinct()
                    .collect(Collectors.joining("+"));
            TransformerModel merged = peft.mergeAndUnload();
            Files.createDirectories(output.getParent());
            tmp = Files.createTempDirectory(output.getParent(), "." + output.getFileName() + ".merge-");
            merged.save(tmp);
            for (String f : COPIED) {
                if (Files.isRegularFile(model.resolve(f))) {
                    AtomicFiles.copy(model.resolve(f), tmp.resolve(f));
                }
            }
            AtomicFiles.replaceDirectory(tmp, output);
            tmp = null;
            root.out.printf("merged %s adapter%s %s into %s (%,d parameters%s); wrote %s%n", type,
                    adapters.size() > 1 ? "s" : "", adapters.stream().map(a -> a.dir().toString())
                            .collect(Collectors.joining(", ")), merged.architecture(), merged.numParameters(),
                    dense ? ", " + dequantised + " 4-bit layers dequantised" : fourBit(merged) ? ", 4-bit, requantised" : "",
                    output);
        } catch (IOException e) {
            throw new UncheckedIOException("merge: cannot write " + output + ": " + e.getMessage(), e);
        } finally {
            if (tmp != null) {
                delete(tmp);
            }
        }
        return 0;
    }

    private static boolean fourBit(TransformerModel m) {
        return m.modules().values().stream().anyMatch(x -> x instanceof io.github.peft4j.nn.quant.Linear4bit);
    }

    /** @return whether a directory exists and has entries (shared with {@code quantize}) */
    static boolean nonEmpty(Path dir) {
        if (!Files.isDirectory(dir)) {
            return false;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isPresent();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + dir + ": " + e.getMessage(), e);
        }
    }

    static void delete(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw new PeftException("cannot remove " + dir + ": " + e.getMessage(), e);
        }
    }
}
