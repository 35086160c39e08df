package io.github.peft4j.io;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
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
 * Writes files atomically: readers see either the old file or the complete new one, never a partial file, also
 * when the process is killed (SIGKILL) or the machine loses power in the middle of a write.
 *
 * <p>The content is written to a temporary file {@code .<name>.tmp-<random>} in the target's directory,
 * flushed to disk ({@link FileChannel#force(boolean)}), then renamed over the target with
 * {@link StandardCopyOption#ATOMIC_MOVE}, and the directory entry is flushed too. If anything fails the temporary
 * file is deleted and an existing target is left untouched. Missing parent directories are created.
 *
 * <p>Every file peft4j writes goes through this class: single files ({@link #write}, {@link #writeBytes},
 * {@link #writeString}, {@link #copy}, {@link #move}), whole directories such as checkpoints and merged models
 * ({@link #replaceDirectory}), and append-only logs such as {@code metrics.jsonl} ({@link #appendLine}: each line
 * lands whole). A kill leaves at most a stray dot-named temporary file or staging directory next to the target,
 * which readers ignore. All methods are safe to call from several threads for different targets.
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

    /**
     * Copies a file atomically (temp file, fsync, rename, directory fsync): the target is the old file or a
     * complete copy.
     *
     * @param source the file to copy
     * @param target the file to create or replace
     * @throws UncheckedIOException if reading or writing fails
     */
    public static void copy(Path source, Path target) {
        write(target, out -> Files.copy(source, out));
    }

    /**
     * Moves a finished file into place: flushes its bytes, renames it atomically over the target (same file
     * system) and flushes the directory. For files another program wrote (a download) that must not appear
     * half-written.
     *
     * @param source a complete file on the target's file system
     * @param target the file to create or replace
     * @throws UncheckedIOException if flushing or renaming fails
     */
    public static void move(Path source, Path target) {
        Path absolute = target.toAbsolutePath();
        try {
            Files.createDirectories(absolute.getParent());
            try (FileChannel ch = FileChannel.open(source, StandardOpenOption.WRITE)) {
                ch.force(true);
            }
            Files.move(source, absolute, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            syncDirectory(absolute.getParent());
        } catch (IOException e) {
            throw new UncheckedIOException("failed to move " + source + " to " + target + ": " + e.getMessage(), e);
        }
    }

    /**
     * Appends one line to a log file (created if missing) in a single write, then flushes it to disk: after a kill
     * the file holds every earlier line whole and this one whole or not at all (a torn last line, possible only
     * when the machine itself fails mid-write, is what readers of such logs skip).
     *
     * @param file the log file
     * @param line the line, without its line break
     * @throws UncheckedIOException if the write fails
     */
    public static void appendLine(Path file, String line) {
        byte[] bytes = (line + "\n").getBytes(StandardCharsets.UTF_8);
        Path absolute = file.toAbsolutePath();
        try {
            Files.createDirectories(absolute.getParent());
            boolean created = !Files.exists(absolute);
            try (FileChannel ch = FileChannel.open(absolute, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.APPEND)) {
                ByteBuffer b = ByteBuffer.wrap(bytes);
                while (b.hasRemaining()) {
                    ch.write(b);
                }
                ch.force(false);
            }
            if (created) {
                syncDirectory(absolute.getParent());
            }
        } catch (IOException e) {
            throw new UncheckedIOException("failed to append to " + file + ": " + e.getMessage(), e);
        }
    }

    /**
     * Puts a finished directory in place of {@code target}: every file and directory under {@code staged} is
     * flushed, then {@code target} (if it exists) is renamed aside to {@code .<name>.old}, {@code staged} is renamed
     * to {@code target}, the parent directory is flushed, and the old directory is deleted. Directories cannot be
     * swapped in one rename, so a kill between the two renames leaves {@code .<name>.old} and no {@code target};
     * {@link #recoverDirectory} (called first by this method, and by readers that care) puts the old one back.
     *
     * @param staged a complete directory on the target's file system (it is moved, not copied)
     * @param target the directory to create or replace
     * @throws UncheckedIOException if flushing or renaming fails (the previous directory is then put back)
     */
    public static void replaceDirectory(Path staged, Path target) {
        Path absolute = target.toAbsolutePath().normalize();
        Path parent = absolute.getParent();
        Path old = parent.resolve("." + absolute.getFileName() + ".old");
        try {
            recoverDirectory(absolute);
            deleteTree(old); // a leftover of a swap that completed
            syncTree(staged);
            boolean had = Files.exists(absolute, java.nio.file.LinkOption.NOFOLLOW_LINKS);
            if (had) {
                Files.move(absolute, old, StandardCopyOption.ATOMIC_MOVE);
            }
            try {
                Files.move(staged, absolute, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException e) {
                if (had) {
                    Files.move(old, absolute, StandardCopyOption.ATOMIC_MOVE);
                }
                throw e;
            }
            syncDirectory(parent);
            deleteTree(old);
        } catch (IOException e) {
            throw new UncheckedIOException("failed to put " + staged + " in place of " + target + ": " + e.getMessage(), e);
        }
    }

    /**
     * Finishes what a killed {@link #replaceDirectory} left: if {@code target} is missing and {@code .<name>.old}
     * exists, the old directory is renamed back.
     *
     * @param target a directory written with {@link #replaceDirectory}
     * @return whether the old directory was put back
     * @throws UncheckedIOException if the rename fails
     */
    public static boolean recoverDirectory(Path target) {
        Path absolute = target.toAbsolutePath().normalize();
        Path old = absolute.getParent().resolve("." + absolute.getFileName() + ".old");
        if (Files.exists(absolute, java.nio.file.LinkOption.NOFOLLOW_LINKS) || !Files.isDirectory(old)) {
            return false;
        }
        try {
            Files.move(old, absolute, StandardCopyOption.ATOMIC_MOVE);
            syncDirectory(absolute.getParent());
            return true;
        } catch (IOException e) {
            throw new UncheckedIOException("failed to restore " + old + " to " + target + ": " + e.getMessage(), e);
        }
    }

    /**
     * Deletes a directory so that it is never seen half-deleted: it is first renamed to a dot-name
     * ({@code .<name>.deleted-<random>}) in one atomic step, then deleted file by file. A kill leaves either the
     * whole directory or a stray dot-named one, never a checkpoint missing some of its files.
     *
     * @param dir the directory (nothing happens if it does not exist)
     * @throws UncheckedIOException if renaming or deleting fails
     */
    public static void deleteDirectory(Path dir) {
        Path absolute = dir.toAbsolutePath().normalize();
        if (!Files.exists(absolute, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        Path doomed = absolute.resolveSibling("." + absolute.getFileName() + ".deleted-"
                + Long.toHexString(RANDOM.nextLong()));
        try {
            Files.move(absolute, doomed, StandardCopyOption.ATOMIC_MOVE);
            syncDirectory(absolute.getParent());
            deleteTree(doomed);
        } catch (IOException e) {
            throw new UncheckedIOException("failed to delete " + dir + ": " + e.getMessage(), e);
        }
    }

    /** Flushes every regular file and directory under {@code root} (files first, then their directories). */
    private static void syncTree(Path root) throws IOException {
        try (java.util.stream.Stream<Path> s = Files.walk(root)) {
            for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                if (Files.isRegularFile(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
                        ch.force(true);
                    }
                } else if (Files.isDirectory(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                    syncDirectory(p);
                }
            }
        }
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (java.util.stream.Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
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
