package io.github.peft4j.io;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.Objects;

/**
 * Writes files atomically: readers see either the old file or the complete new one, never a partial file.
 *
 * <p>The content is written to a temporary file {@code .<name>.tmp-<random>} in the target's directory,
 * flushed to disk ({@link FileChannel#force(boolean)}), then renamed over the target with
 * {@link StandardCopyOption#ATOMIC_MOVE}. If anything fails the temporary file is deleted and an existing
 * target is left untouched. Missing parent directories are created.
 */
public final class AtomicFiles {
    private static final SecureRandom RANDOM = new SecureRandom();

    private AtomicFiles() {}

    /**
     * Writes a file atomically with content produced by {@code body}.
     *
     * <p>The stream given to {@code body} is buffered; {@code body} must not close it. Unchecked exceptions
     * thrown by {@code body} are rethrown unchanged after the temporary file has been deleted.
     *
     * @param target the file to create or replace
     * @param body writes the whole content to the stream
     * @throws UncheckedIOException if writing, flushing or renaming fails (the message names the target)
     */
    public static void write(Path target, IoConsumer<OutputStream> body) {
        Objects.requireNonNull(body, "body");
        Path absolute = target.toAbsolutePath();
        Path dir = absolute.getParent();
        Path tmp = dir.resolve("." + absolute.getFileName() + ".tmp-" + Long.toHexString(RANDOM.nextLong()));
        boolean moved = false;
        try {
            Files.createDirectories(dir);
            try (FileChannel channel = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                OutputStream out = new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 20);
                body.accept(new NonClosingOutputStream(out));
                out.flush();
                channel.force(true);
            }
            Files.move(tmp, absolute, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            moved = true;
            syncDirectory(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("failed to write " + target + ": " + e.getMessage(), e);
        } finally {
            if (!moved) {
                try {
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    // best effort: the original failure is the one to report
                }
            }
        }
    }

    /**
     * Writes bytes to a file atomically.
     *
     * @param target the file to create or replace
     * @param bytes the complete content
     * @throws UncheckedIOException if the write fails
     */
    public static void writeBytes(Path target, byte[] bytes) {
        write(target, out -> out.write(bytes));
    }

    /**
     * Writes text to a file atomically, encoded as UTF-8.
     *
     * @param target the file to create or replace
     * @param text the complete content
     * @throws UncheckedIOException if the write fails
     */
    public static void writeString(Path target, String text) {
        writeBytes(target, text.getBytes(StandardCharsets.UTF_8));
    }

    /** Flushes the directory entry after the rename, where the platform allows it (not on Windows). */
    private static void syncDirectory(Path dir) {
        try (FileChannel channel = FileChannel.open(dir, StandardOpenOption.READ)) {
            channel.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
            // directories cannot be opened or synced on some platforms; the rename itself is still atomic
        }
    }

    /** Keeps {@code body} from closing the channel before it is forced to disk. */
    private static final class NonClosingOutputStream extends java.io.FilterOutputStream {
        NonClosingOutputStream(OutputStream out) {
            super(out);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            out.write(b, off, len);
        }

        @Override
        public void close() throws IOException {
            out.flush();
        }
    }
}
