package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.AutoPeftModel;
import io.github.peft4j.peft.PeftModel;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * {@code peft4j merge}: merges an adapter into the base weights and writes a normal Hugging Face checkpoint
 * ({@code config.json}, {@code model.safetensors} in fp32, plus the model directory's tokenizer and generation
 * files). The checkpoint is written into a temporary sibling directory and renamed into place, so the output is
 * never half-written. An existing non-empty output directory is an error unless {@code --force}, which replaces it.
 */
final class MergeCommand {
    static final String USAGE = String.join("\n",
            "  merge  --model DIR --adapter DIR --output DIR [--force]",
            "         merges the adapter into the weights; writes config.json + model.safetensors (+ tokenizer files)");

    /** Files copied from the model directory when present. */
    static final List<String> COPIED = List.of("generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json");

    private MergeCommand() {}

    /**
     * Runs the command.
     *
     * @param argv the whole command line ({@code argv[0]} is {@code merge})
     * @param out standard output
     */
    static void run(String[] argv, PrintStream out) {
        Args a = new Args("merge", argv, 1, Set.of("--model", "--adapter", "--output"), Set.of("--force"));
        Path modelDir = a.existingDir("--model");
        Path adapter = a.existingDir("--adapter");
        Path output = Path.of(a.required("--output")).toAbsolutePath().normalize();
        boolean force = a.flag("--force");
        if (Files.exists(output) && !Files.isDirectory(output)) {
            throw new CliException("merge: --output " + output + " exists and is not a directory");
        }
        if (!force && nonEmpty(output)) {
            throw new CliException("merge: --output " + output + " is not empty (use --force to replace it)");
        }
        if (output.equals(modelDir.toAbsolutePath().normalize())) {
            throw new CliException("merge: --output must differ from --model");
        }
        Path tmp = null;
        try (TransformerModel model = AutoPeftModel.loadBase(modelDir, adapter, Device.cpu(), DataType.FLOAT32)) {
            PeftModel peft = Peft4jCli.open(model, adapter);
            String type = peft.adapter(PeftModel.DEFAULT).config().peftType();
            TransformerModel merged = peft.mergeAndUnload();
            Files.createDirectories(output.getParent());
            tmp = Files.createTempDirectory(output.getParent(), "." + output.getFileName() + ".merge-");
            merged.save(tmp);
            for (String f : COPIED) {
                if (Files.isRegularFile(modelDir.resolve(f))) {
                    Files.copy(modelDir.resolve(f), tmp.resolve(f));
                }
            }
            replace(tmp, output);
            tmp = null;
            out.printf("merged %s adapter %s into %s (%,d parameters); wrote %s%n", type, adapter, merged.architecture(),
                    merged.numParameters(), output);
        } catch (IOException e) {
            throw new UncheckedIOException("merge: cannot write " + output + ": " + e.getMessage(), e);
        } finally {
            if (tmp != null) {
                delete(tmp);
            }
        }
    }

    private static boolean nonEmpty(Path dir) {
        if (!Files.isDirectory(dir)) {
            return false;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isPresent();
        } catch (IOException e) {
            throw new UncheckedIOException("merge: cannot read " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Moves the finished directory into place; an old output is moved aside first and deleted afterwards. */
    private static void replace(Path done, Path output) throws IOException {
        Path old = null;
        if (Files.exists(output)) {
            old = Files.createTempDirectory(output.getParent(), "." + output.getFileName() + ".old-");
            Files.delete(old);
            Files.move(output, old, StandardCopyOption.ATOMIC_MOVE);
        }
        try {
            Files.move(done, output, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            if (old != null) {
                Files.move(old, output, StandardCopyOption.ATOMIC_MOVE);
            }
            throw e;
        }
        if (old != null) {
            delete(old);
        }
    }

    private static void delete(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw new PeftException("merge: cannot remove " + dir + ": " + e.getMessage(), e);
        }
    }
}
