package io.github.peft4j.examples;

import io.github.peft4j.examples.onnx.ImportedBert;
import io.github.peft4j.examples.onnx.OnnxBertImporter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j import-onnx}: turns an ONNX BERT export into a Hugging Face model directory (config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json). Without {@code --onnx} it imports the
 * all-MiniLM-L6-v2 bundled on the classpath together with its tokenizer. With {@code --onnx} and no
 * {@code --tokenizer}, a {@code tokenizer.json} beside the file or in its parent directory (optimum's
 * {@code onnx/model.onnx} layout) is used when present.
 */
@Command(name = "import-onnx", sortOptions = false, separator = " ",
        description = {"Turns an ONNX BERT export into a Hugging Face model directory (default: the bundled all-MiniLM-L6-v2).",
            "",
            "Reads an ONNX BERT export with PyTorch / optimum node names and writes config.json, model.safetensors,"
                + " tokenizer.json and tokenizer_config.json. Without --onnx: the all-MiniLM-L6-v2 bundled on the"
                + " classpath. Without --tokenizer: a tokenizer.json beside the ONNX file or in its parent directory, if"
                + " any. See docs/minilm.md. Java API: OnnxBertImporter.read, ImportedBert.save."},
        footer = {"Examples:",
            "  $ ./peft4j import-onnx --output /tmp/minilm",
            "  $ ./peft4j import-onnx --onnx exports/onnx/model.onnx --output /tmp/my-bert --overwrite"})
final class ImportOnnxCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--onnx", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "The ONNX file (default: the bundled all-MiniLM-L6-v2).")
    Path onnx;

    @Option(names = "--tokenizer", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "tokenizer.json to save with it (needs --onnx; default: one beside the ONNX file).")
    Path tokenizerFile;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "The model directory to write.")
    Path output;

    @Option(names = "--overwrite", description = "Replace a non-empty --output.")
    boolean overwrite;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        PrintStream out = root.out;
        if (!overwrite && Files.isDirectory(output) && !isEmptyDir(output)) { // fail before the slow part
            throw new CliException("import-onnx: --output " + output + " is not empty; choose a new directory or pass --overwrite");
        }
        ImportedBert bert;
        byte[] tokenizer;
        if (onnx == null) {
            if (tokenizerFile != null) {
                throw new CliException("import-onnx: --tokenizer needs --onnx (the bundled model has its own)");
            }
            bert = OnnxBertImporter.readBundled();
            tokenizer = OnnxBertImporter.bundledTokenizer();
        } else {
            Path tok = tokenizerFile != null ? tokenizerFile : besides(onnx);
            bert = OnnxBertImporter.read(onnx);
            tokenizer = tok == null ? null : read(tok);
            if (tok == null) {
                out.println("note: no tokenizer.json beside " + onnx + "; saving the model without a tokenizer");
            }
        }
        bert.save(output, tokenizer, overwrite);
        var c = bert.config();
        out.printf("imported %s: %d layers, hidden %d, %d heads, intermediate %d, vocab %d, %s, eps %s, %,d parameters%s%n",
                bert.source(), c.get("num_hidden_layers").asInt(), c.get("hidden_size").asInt(),
                c.get("num_attention_heads").asInt(), c.get("intermediate_size").asInt(), c.get("vocab_size").asInt(),
                c.get("hidden_act").asText(), c.get("layer_norm_eps").asText(), bert.numParameters(),
                bert.hasPooler() ? "" : " (no pooler)");
        out.println("skipped initializers: " + bert.skipped());
        out.println("wrote " + output + (tokenizer == null ? " (no tokenizer)" : " with tokenizer"));
        return 0;
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
