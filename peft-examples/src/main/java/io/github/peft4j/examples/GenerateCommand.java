package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;

/**
 * {@code peft4j generate}: greedy or sampled decoding, either of a text prompt (tokenized with the model
 * directory's {@code tokenizer.json}; the decoded continuation is printed, and the tokenizer's EOS also stops) or
 * of token ids from the {@code logits} command's input file, writing {@code {"generated_ids": [[...]]}} (the new
 * tokens only; rows that stopped early are padded with the pad id, as transformers returns them).
 */
final class GenerateCommand {
    static final Set<String> VALUES = Set.of("--model", "--adapter", "--input", "--prompt", "--output", "--max-new-tokens",
            "--temperature", "--top-k", "--top-p", "--seed", "--repetition-penalty", "--stop");
    static final Set<String> FLAGS = Set.of("--greedy", "--sample", "--no-cache");
    static final String USAGE = String.join("\n",
            "  generate --model DIR [--adapter DIR] (--prompt TEXT | --input FILE) [--output FILE] [--max-new-tokens N (20)]",
            "         [--greedy | --sample [--temperature T] [--top-k K] [--top-p P] [--seed S]]",
            "         [--repetition-penalty R] [--stop ID,ID...] [--no-cache]",
            "         --prompt: tokenizes TEXT with the model dir's tokenizer.json, prints the decoded continuation;",
            "         --input: decodes the LEFT-padded input_ids; writes {\"generated_ids\": [[...]]} (new tokens only)");

    private GenerateCommand() {}

    /**
     * Runs the command.
     *
     * @param argv the whole command line ({@code argv[0]} is {@code generate})
     * @param out standard output
     */
    static void run(String[] argv, PrintStream out) {
        Args a = new Args("generate", argv, 1, VALUES, FLAGS);
        Path modelDir = a.existingDir("--model");
        Path adapter = a.optional("--adapter") == null ? null : a.existingDir("--adapter");
        String prompt = a.optional("--prompt");
        if ((prompt == null) == (a.optional("--input") == null)) {
            throw new CliException("generate: give exactly one of --prompt TEXT and --input FILE");
        }
        Path input = prompt == null ? a.existingFile("--input") : null;
        Path output = a.optional("--output") == null ? null : Path.of(a.optional("--output"));
        GenerationConfig config = config(a);
        if (prompt != null) {
            fromText(modelDir, adapter, prompt, config, output, out);
            return;
        }
        try (TransformerModel model = Models.load(modelDir, Device.cpu(), DataType.FLOAT32, null)) {
            InputFile in = InputFile.read(input, model.vocabSize());
            PeftModel peft = Peft4jCli.open(model, adapter);
            GenerationResult r = Generator.of(peft).generate(in.inputIds, in.attentionMask, config);
            write(r, output, out);
        }
    }

    /** Tokenizes the prompt, generates, prints the decoded new text (special tokens skipped). */
    private static void fromText(Path modelDir, Path adapter, String prompt, GenerationConfig config, Path output,
            PrintStream out) {
        try (Tokenizer tok = Tokenizer.load(modelDir);
                TransformerModel model = Models.load(modelDir, Device.cpu(), DataType.FLOAT32, null)) {
            int[] ids = tok.encode(prompt, true);
            if (ids.length == 0) {
                throw new CliException("generate: --prompt gives no tokens");
            }
            for (int id : ids) {
                if (id >= model.vocabSize()) {
                    throw new CliException("generate: " + tok.file() + " gives token id " + id
                            + ", outside the model's vocabulary [0, " + model.vocabSize() + ")");
                }
            }
            if (tok.eosTokenId().isPresent()) { // the tokenizer's EOS ends the text too
                int[] stops = Arrays.copyOf(config.stopTokenIds(), config.stopTokenIds().length + 1);
                stops[stops.length - 1] = tok.eosTokenId().getAsInt();
                config = config.toBuilder().stopTokenIds(stops).build();
            }
            PeftModel peft = Peft4jCli.open(model, adapter);
            GenerationResult r = Generator.of(peft).generate(new int[][] {ids}, config);
            if (output != null) {
                write(r, output, out);
            }
            out.println(tok.decode(r.tokens(0), true));
        }
    }

    private static void write(GenerationResult r, Path output, PrintStream out) {
        ObjectNode root = new ObjectMapper().createObjectNode();
        ArrayNode rows = root.putArray("generated_ids");
        for (int[] row : r.tokens()) {
            ArrayNode n = rows.addArray();
            Arrays.stream(row).forEach(n::add);
        }
        String json = root.toString();
        if (output == null) {
            out.println(json);
        } else {
            AtomicFiles.writeString(output, json + "\n");
            out.println("wrote generated_ids [" + r.size() + ", " + (r.size() == 0 ? 0 : r.tokens()[0].length) + "] to "
                    + output + " (new tokens per row: " + Arrays.toString(r.lengths()) + ")");
        }
    }

    private static GenerationConfig config(Args a) {
        if (a.flag("--greedy") && a.flag("--sample")) {
            throw new CliException("generate: --greedy and --sample exclude each other");
        }
        boolean sample = a.flag("--sample");
        for (String k : new String[] {"--temperature", "--top-k", "--top-p", "--seed"}) {
            if (!sample && a.optional(k) != null) {
                throw new CliException("generate: " + k + " only applies with --sample");
            }
        }
        GenerationConfig.Builder b = GenerationConfig.builder().maxNewTokens(a.integer("--max-new-tokens", 20))
                .doSample(sample).temperature(a.number("--temperature", 1.0)).topK(a.integer("--top-k", 0))
                .topP(a.number("--top-p", 1.0)).seed(a.integer("--seed", 0))
                .repetitionPenalty(a.number("--repetition-penalty", 1.0)).useCache(!a.flag("--no-cache"));
        String stop = a.optional("--stop");
        if (stop != null) {
            try {
                b.stopTokenIds(Arrays.stream(stop.split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray());
            } catch (NumberFormatException e) {
                throw new CliException("generate: --stop expects comma-separated token ids, got '" + stop + "'");
            }
        }
        return b.build();
    }
}
