package io.github.peft4j.examples.sft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.examples.fetch.PinnedFile;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.commons.compress.archivers.ar.ArArchiveEntry;
import org.apache.commons.compress.archivers.ar.ArArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.xz.XZCompressorOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** WordNet read from a synthetic Debian package (ar + data.tar.xz), and the pinned-download cache. */
class WordNetDebTest {
    static final String LICENCE = "  1 This software and database is being provided to you, the LICENSEE\n";

    /** A data file whose synset lines sit at their byte offsets; returns the text and fills the offsets. */
    static String data(List<String> lines, List<Long> offsets) {
        StringBuilder sb = new StringBuilder(LICENCE);
        for (String l : lines) {
            offsets.add((long) sb.length());
            sb.append(String.format("%08d", sb.length())).append(l).append("  \n");
        }
        return sb.toString();
    }

    static byte[] deb(Map<String, String> files) throws IOException {
        ByteArrayOutputStream tarBytes = new ByteArrayOutputStream();
        try (TarArchiveOutputStream tar = new TarArchiveOutputStream(new XZCompressorOutputStream(tarBytes))) {
            for (Map.Entry<String, String> f : files.entrySet()) {
                byte[] b = f.getValue().getBytes(StandardCharsets.ISO_8859_1);
                TarArchiveEntry e = new TarArchiveEntry("./usr/share/wordnet/" + f.getKey());
                e.setSize(b.length);
                tar.putArchiveEntry(e);
                tar.write(b);
                tar.closeArchiveEntry();
            }
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (ArArchiveOutputStream ar = new ArArchiveOutputStream(out)) {
            byte[] v = "2.0\n".getBytes(StandardCharsets.US_ASCII);
            ar.putArchiveEntry(new ArArchiveEntry("debian-binary", v.length));
            ar.write(v);
            ar.closeArchiveEntry();
            byte[] d = tarBytes.toByteArray();
            ar.putArchiveEntry(new ArArchiveEntry("data.tar.xz", d.length));
            ar.write(d);
            ar.closeArchiveEntry();
        }
        return out.toByteArray();
    }

    @Test
    void readsIndexSensesGlossesAndExamples(@TempDir Path tmp) throws IOException {
        Map<String, String> files = new LinkedHashMap<>();
        for (String pos : WordNet.POS) {
            List<Long> off = new java.util.ArrayList<>();
            String d = data(List.of(" 05 n 01 dog 0 000 | a domesticated canid; \"the dog barked all night\"",
                    " 05 n 01 dog 0 000 | a dull unattractive girl;", " 05 n 01 cat 0 000 | a small feline"), off);
            files.put("data." + pos, d);
            files.put("index." + pos, LICENCE + "cat " + pos.charAt(0) + " 1 0 1 0 " + String.format("%08d", off.get(2))
                    + "  \ndog " + pos.charAt(0) + " 2 2 @ ~ 2 1 " + String.format("%08d %08d", off.get(0), off.get(1)) + "  \n");
        }
        Path deb = tmp.resolve("w.deb");
        Files.write(deb, deb(files));
        Map<String, List<WordNet.Entry>> wn = WordNet.read(deb);
        WordNet.Entry dog = wn.get("noun").get(1);
        assertEquals("dog", dog.lemma());
        assertEquals(1, dog.tagsenseCount());
        assertEquals(2, dog.senses().size());
        assertEquals("a domesticated canid", dog.senses().get(0).definition());
        assertEquals(List.of("the dog barked all night"), dog.senses().get(0).examples());
        assertEquals("a dull unattractive girl", dog.senses().get(1).definition());
        assertEquals("a small feline", wn.get("adj").get(0).senses().get(0).definition());
        Files.write(deb, "!<arch>\n".getBytes(StandardCharsets.US_ASCII));
        String m = assertThrows(PeftException.class, () -> WordNet.read(deb)).getMessage();
        assertTrue(m.startsWith(deb + ": no data.tar.xz"), m);
        files.put("index.verb", LICENCE + "run v 1 0 1 0 00000999  \n");
        Files.write(deb, deb(files));
        m = assertThrows(PeftException.class, () -> WordNet.read(deb)).getMessage();
        assertTrue(m.contains("data.verb has no synset at offset 999"), m);
    }

    @Test
    void pinnedFileVerifiesCachesAndRecovers(@TempDir Path tmp) throws IOException {
        byte[] good = "the pinned bytes".getBytes(StandardCharsets.UTF_8);
        Path src = tmp.resolve("src");
        Files.write(src, good);
        String sha = PinnedFile.checksumOf(src, "sha256:");
        AtomicInteger fetches = new AtomicInteger();
        byte[][] serve = {good};
        PinnedFile.Source source = new PinnedFile.Source() {
            @Override
            public Path fetch(Path workDir) throws IOException {
                fetches.incrementAndGet();
                Path f = workDir.resolve("f");
                try (OutputStream o = Files.newOutputStream(f)) {
                    o.write(serve[0]);
                }
                return f;
            }

            @Override
            public String describe() {
                return "test file";
            }
        };
        PinnedFile p = new PinnedFile(tmp.resolve("cache"), "x.bin", sha, source);
        assertEquals(p.cached(), p.get());
        assertEquals(1, fetches.get());
        p.get(); // cached and verified
        assertEquals(1, fetches.get());
        Files.write(p.cached(), "damaged".getBytes(StandardCharsets.UTF_8));
        p.get(); // damaged: fetched again
        assertEquals(2, fetches.get());
        assertEquals("the pinned bytes", Files.readString(p.cached()));
        Files.delete(p.cached());
        serve[0] = "tampered".getBytes(StandardCharsets.UTF_8);
        String m = assertThrows(PeftException.class, p::get).getMessage();
        assertTrue(m.contains("does not match its pinned checksum") && m.contains(sha), m);
        assertTrue(!Files.exists(p.cached()));
        try (var s = Files.list(tmp.resolve("cache"))) {
            assertEquals(0, s.count(), "nothing half-fetched is left in the cache");
        }
        assertTrue(PinnedFile.checksumOf(src, "sha512-").startsWith("sha512-"));
    }
}
