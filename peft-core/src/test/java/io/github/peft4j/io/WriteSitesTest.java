package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The write-site audit, kept: no main source of any module writes a file except through {@link AtomicFiles} (temp
 * file, fsync, rename, directory fsync), or in the few places listed here with the reason. A new
 * {@code Files.write}, output stream, writer, {@code Files.copy/move} or image write elsewhere fails this test.
 */
class WriteSitesTest {
    /** Raw file-writing calls. */
    static final Pattern RAW = Pattern.compile("(?<![A-Za-z])Files\\.(?:write|writeString|newOutputStream|newBufferedWriter|copy|move)\\("
            + "|new FileOutputStream|new FileWriter|new RandomAccessFile|new PrintStream\\((?:new File|Path|file)"
            + "|ImageIO\\.write\\(|saveBitmap|StandardOpenOption\\.(?:WRITE|APPEND|CREATE)|Channels\\.newOutputStream");

    /** File name to the code it may hold, and why. */
    static final Map<String, String> ALLOWED = Map.of(
            "AtomicFiles.java", "", // the implementation
            "PeakRss.java", "Files.writeString(CLEAR_REFS", // /proc/self/clear_refs: a kernel control, not a file
            "MetricsLog.java", "ImageIO.write(both, \"png\", os)"); // into AtomicFiles.write's stream

    @Test
    void everyFileIsWrittenThroughAtomicFiles() throws IOException {
        Path root = Path.of("").toAbsolutePath();
        while (!Files.isDirectory(root.resolve("peft-core/src/main/java"))) {
            root = root.getParent();
        }
        List<String> offending = new ArrayList<>();
        int scanned = 0;
        try (Stream<Path> s = Files.walk(root, 1)) {
            for (Path module : s.filter(p -> Files.isDirectory(p.resolve("src/main/java"))).toList()) {
                try (Stream<Path> files = Files.walk(module.resolve("src/main/java"))) {
                    for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                        scanned++;
                        String name = f.getFileName().toString();
                        List<String> lines = Files.readAllLines(f);
                        for (int i = 0; i < lines.size(); i++) {
                            String line = lines.get(i);
                            Matcher m = RAW.matcher(line);
                            if (!m.find() || line.trim().startsWith("*") || line.trim().startsWith("//")) {
                                continue;
                            }
                            String allowed = ALLOWED.get(name);
                            if (allowed != null && (allowed.isEmpty() || line.contains(allowed))) {
                                continue;
                            }
                            offending.add(root.relativize(f) + ":" + (i + 1) + ": " + line.trim());
                        }
                    }
                }
            }
        }
        assertTrue(scanned > 100, "scanned " + scanned + " files");
        assertEquals(List.of(), offending, "write files through io.github.peft4j.io.AtomicFiles");
        System.out.println("write-site audit: " + scanned + " main sources, every file write goes through AtomicFiles");
    }
}
