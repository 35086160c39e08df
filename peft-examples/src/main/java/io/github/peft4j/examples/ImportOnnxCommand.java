package io.github.peft4j.examples;

import io.github.peft4j.examples.onnx.ImportedBert;
import io.github.peft4j.examples.onnx.OnnxBertImporter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/**
 * {@code peft4j import-onnx [--onnx FILE] [--tokenizer FILE] --output DIR [--overwrite]}: turns an ONNX BERT
 * export into a Hugging Face model directory (config.json, model.safetensors, tokenizer.json,
 * tokenizer_config.json). Without {@code --onnx} it imports the all-MiniLM-L6-v2 bundled on the classpath
 * together with its tokenizer. With {@code --onnx} and no {@code --tokenizer}, a {@code tokenizer.json} beside the
 * file or in its parent directory (optimum's {@code onnx/model.onnx} layout) is used when present.
 */
final class ImportOnnxCommand {
    /** The option summary for the CLI usage text. */
    static final String USAGE = "  import-onnx [--onnx FILE] [--tokenizer FILE] --output DIR [--overwrite]\n"
            + "         ONNX BERT export -> HF model dir (default: bundled all-MiniLM-L6-v2)";

    private ImportOnnxCommand() {}

    /**
     * Runs the command.
     *
     * @param argv the whole command line (argv[0] is the command name)
     * @param out where the summary goes
     */
    static void run(String[] argv, PrintStream out) {
        Args a = new Args("import-onnx", argv, 1, Set.of("--onnx", "--tokenizer", "--output"), Set.of("--overwrite"));
        Path output = Path.of(a.required("--output"));
        if (!a.flag("--overwrite") && Files.isDirectory(output) && !isEmptyDir(output)) { // fail before the slow part
            throw new CliException("import-onnx: --output " + output + " is not empty; choose a new directory or pass --overwrite");
        }
        ImportedBert bert;
        byte[] tokenizer;
        if (a.optional("--onnx") == null) {
            if (a.optional("--tokenizer") != null) {
                throw new CliException("import-onnx: --tokenizer needs --onnx (the bundled model has its own)");
            }
            bert = OnnxBertImporter.readBundled();
            tokenizer = OnnxBertImporter.bundledTokenizer();
        } else {
            Path onnx = a.existingFile("--onnx");
            Path tok = a.optional("--tokenizer") != null ? a.existingFile("--tokenizer") : besides(onnx);
            bert = OnnxBertImporter.read(onnx);
            tokenizer = tok == null ? null : read(tok);
            if (tok == null) {
                out.println("note: no tokenizer.json beside " + onnx + "; saving the model without a tokenizer");
            }
        }
        bert.save(output, tokenizer, a.flag("--overwrite"));
        var c = bert.config();
        out.printf("imported %s: %d layers, hidden %d, %d heads, intermediate %d, vocab %d, %s, eps %s, %,d parameters%s%n",
                bert.source(), c.get("num_hidden_layers").asInt(), c.get("hidden_size").asInt(),
                c.get("num_attention_heads").asInt(), c.get("intermediate_size").asInt(), c.get("vocab_size").asInt(),
                c.get("hidden_act").asText(), c.get("layer_norm_eps").asText(), bert.numParameters(),
                bert.hasPooler() ? "" : " (no pooler)");
        out.println("skipped initializers: " + bert.skipped());
        out.println("wrote " + output + (tokenizer == null ? " (no tokenizer)" : " with tokenizer"));
    }

    private static Path besides(Path onnx) {
        Path dir = onnx.toAbsolutePath().getParent();
        for (Path p : new Path[] {dir.resolve("tokenizer.json"), dir.getParent() == null ? null : dir.getParent().resolve("tokenizer.json")}) {
            if (p != null && Files.isRegularFile(p)) {
                return p;
            }
        }
        return null;
    }

    private static boolean isEmptyDir(Path dir) {
        try (var s = Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
    }

    private static byte[] read(Path file) {
        try {
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }
}
