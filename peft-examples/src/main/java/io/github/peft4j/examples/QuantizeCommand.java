package io.github.peft4j.examples;

import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.quant.FourBitQuantizer;
import io.github.peft4j.nn.quant.FourBitType;
import io.github.peft4j.nn.quant.Linear4bit;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j quantize}: writes the bnb-4bit checkpoint that transformers + bitsandbytes write for a dense model
 * ({@code from_pretrained(..., quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...)).save_pretrained()}):
 * the same tensors, bit for bit, and the same {@code quantization_config}. Quantises one tensor at a time from the
 * memory map; the output directory is written aside and renamed into place.
 */
@Command(name = "quantize", sortOptions = false, separator = " ",
        description = {"Quantises a dense checkpoint to the bnb-4bit checkpoint transformers + bitsandbytes write.",
            "",
            "Every linear layer except lm_head (and the --skip-modules) becomes bitsandbytes' Linear4bit layout: weight"
                + " (uint8, two codes a byte), weight.absmax, weight.quant_map, with --double-quant also"
                + " weight.nested_absmax and weight.nested_quant_map, and weight.quant_state.bitsandbytes__nf4 (or __fp4);"
                + " embeddings, norms and biases stay fp32. GPT-2's Conv1D weights are transposed to (out, in) first, as"
                + " transformers does. config.json gets transformers' quantization_config; generation and tokenizer files"
                + " are copied. The tensors equal transformers' checkpoint bit for bit (bitsandbytes' CPU code). The"
                + " weights are read one tensor at a time from the memory map, so the dense model is never held. The"
                + " output is written into a hidden temporary directory and renamed into place; an existing non-empty"
                + " output is an error unless --force. The result loads with --model in every command (no flag needed)"
                + " and in transformers. Java API: Models.load(dir, config, device, dtype, task, heads, Quantization),"
                + " TransformerModel.save."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_lora",
            "  $ ./peft4j quantize --model $F/base --quant-type nf4 --double-quant --output /tmp/q/llama-nf4",
            "  quantised 14 linear layers of LlamaForCausalLM to nf4 (double quantisation, blocks of 64): 73,728 weights"
                + " in 38,128 bytes (4.137 bits per weight), 1 kept dense (lm_head); wrote /tmp/q/llama-nf4",
            "  $ ./peft4j logits --model /tmp/q/llama-nf4 --input $F/input_ids.json --output /tmp/q/logits.json",
            "  (the same logits as ./peft4j logits --model $F/base --quantize nf4 --double-quant ...)"})
final class QuantizeCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Dense Hugging Face model directory (fp32, fp16 or bf16 safetensors).")
    Path model;

    @Option(names = "--quant-type", paramLabel = "TYPE", converter = QuantizeOptions.QuantTypes.class,
            completionCandidates = QuantizeOptions.QuantTypes.class,
            description = "bnb_4bit_quant_type: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String quantType = "nf4";

    @Option(names = "--double-quant", description = "bnb_4bit_use_double_quant: quantise the block absmax values to 8"
            + " bits in blocks of 256 (about 4.13 instead of 4.5 bits per weight).")
    boolean doubleQuant;

    @Option(names = "--blocksize", paramLabel = "N", converter = Converters.Positive.class,
            description = "Values per block: a power of two from 32 to 4096 (default: ${DEFAULT-VALUE}, transformers'"
                    + " only choice; another size is recorded in each weight's quant_state, which transformers reads).")
    int blocksize = FourBitQuantizer.DEFAULT_BLOCKSIZE;

    @Option(names = "--skip-modules", split = ",", paramLabel = "NAME",
            description = "llm_int8_skip_modules: modules kept dense, each a regex matched at the start of a module"
                    + " path or a suffix of it (default: lm_head). Given, it replaces the default, as in transformers.")
    List<String> skipModules;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "The new model directory.")
    Path outputOption;

    @Option(names = "--force", description = "Replace a non-empty --output.")
    boolean force;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        Path output = outputOption.toAbsolutePath().normalize();
        if (Files.exists(output) && !Files.isDirectory(output)) {
            throw new CliException("quantize: --output " + output + " exists and is not a directory");
        }
        if (!force && MergeCommand.nonEmpty(output)) {
            throw new CliException("quantize: --output " + output + " is not empty (use --force to replace it)");
        }
        if (output.equals(model.toAbsolutePath().normalize())) {
            throw new CliException("quantize: --output must differ from --model");
        }
        Quantization q;
        try {
            q = new Quantization(FourBitType.of(quantType, "--quant-type"), FourBitQuantizer.checkBlocksize(blocksize),
                    doubleQuant, skipModules);
        } catch (IllegalArgumentException e) {
            throw new CliException("quantize: " + e.getMessage());
        }
        HfConfig config = HfConfig.read(model);
        if (Quantization.fromConfig(config) != null) {
            throw new CliException("quantize: " + model + " is already 4-bit quantised (its config.json has"
                    + " quantization_config)");
        }
        Path tmp = null;
        try (TransformerModel m = Models.load(model, config, ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32,
                null, null, q)) {
            Files.createDirectories(output.getParent());
            tmp = Files.createTempDirectory(output.getParent(), "." + output.getFileName() + ".quantize-");
            m.save(tmp);
            for (String f : MergeCommand.COPIED) {
                if (Files.isRegularFile(model.resolve(f))) {
                    AtomicFiles.copy(model.resolve(f), tmp.resolve(f));
                }
            }
            AtomicFiles.replaceDirectory(tmp, output);
            tmp = null;
            report(m, q, output);
        } catch (IOException e) {
            throw new UncheckedIOException("quantize: cannot write " + output + ": " + e.getMessage(), e);
        } finally {
            if (tmp != null) {
                MergeCommand.delete(tmp);
            }
        }
        return 0;
    }

    private void report(TransformerModel m, Quantization q, Path output) {
        int layers = 0;
        long weights = 0;
        long bytes = 0;
        List<String> dense = new ArrayList<>();
        for (var e : m.modules().entrySet()) {
            Module mod = e.getValue();
            if (mod instanceof Linear4bit l) {
                layers++;
                weights += l.inFeatures() * l.outFeatures();
                bytes += l.storageBytes();
            } else if (mod instanceof io.github.peft4j.nn.Linear) {
                dense.add(e.getKey());
            }
        }
        root.out.printf("quantised %d linear layers of %s to %s (%s, blocks of %d): %,d weights in %,d bytes"
                + " (%.3f bits per weight), %d kept dense%s; wrote %s%n", layers, m.architecture(), q.type().bnbName(),
                q.doubleQuant() ? "double quantisation" : "no double quantisation", q.blocksize(), weights, bytes,
                weights == 0 ? 0.0 : 8.0 * bytes / weights, dense.size(), dense.isEmpty() ? "" : " (" + String.join(", ",
                        dense) + ")", output);
    }
}
