package io.github.peft4j.fuzz;

import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Runs one input through a {@link FuzzTargets} target and enforces the pass condition: the parser either accepts
 * the input or rejects it with a {@link PeftException} whose message is one clear line (non-blank, no line break,
 * at most {@link #MAX_MESSAGE} characters). Anything else that escapes (a {@code NullPointerException}, an
 * {@code IllegalArgumentException} from a library underneath, an {@code OutOfMemoryError}, a JVM crash) is a finding:
 * it is thrown on to the fuzzer, which saves the input.
 *
 * <p>With {@code -Dpeft4j.fuzz.log=DIR} every rejection's line is appended to {@code DIR/<target>.rejected.txt} and a
 * summary ({@code inputs accepted rejected}) is written to {@code DIR/<target>.summary.txt} when the JVM exits.
 */
final class FuzzHarness {
    /** The longest rejection message accepted as "one clear line". */
    static final int MAX_MESSAGE = io.github.peft4j.PeftException.MAX_MESSAGE;

    private static final Map<String, AtomicLong[]> COUNTS = new ConcurrentHashMap<>();
    private static final Map<String, PrintWriter> LOGS = new ConcurrentHashMap<>();
    private static final Set<String> STARTED = ConcurrentHashMap.newKeySet();
    private static final Path LOG_DIR = System.getProperty("peft4j.fuzz.log") == null ? null
            : Path.of(System.getProperty("peft4j.fuzz.log"));

    static {
        if (LOG_DIR != null) {
            Runtime.getRuntime().addShutdownHook(new Thread(FuzzHarness::summarise, "fuzz-summary"));
        }
    }

    private FuzzHarness() {}

    /**
     * @param target a key of {@link FuzzTargets#ALL}
     * @param data the input
     * @return the rejection message, or null if the input was accepted
     * @throws Exception whatever other than a well-formed {@link PeftException} the parser threw
     */
    static String run(String target, byte[] data) throws Exception {
        FuzzTargets.Target t = FuzzTargets.ALL.get(target);
        if (t == null) {
            throw new IllegalArgumentException("no fuzz target '" + target + "'; targets: " + FuzzTargets.ALL.keySet());
        }
        AtomicLong[] c = COUNTS.computeIfAbsent(target, k -> new AtomicLong[] {new AtomicLong(), new AtomicLong()});
        try {
            t.parse(data, scratch(target));
            c[0].incrementAndGet();
            return null;
        } catch (PeftException e) {
            String m = e.getMessage();
            if (m == null || m.isBlank() || m.indexOf('\n') >= 0 || m.indexOf('\r') >= 0 || m.length() > MAX_MESSAGE) {
                throw new AssertionError(target + ": a rejection must be one clear line of at most " + MAX_MESSAGE
                        + " characters, got " + (m == null ? "null" : m.length() + " characters: "
                        + m.substring(0, Math.min(m.length(), 300)).replace("\n", "\\n")), e);
            }
            c[1].incrementAndGet();
            log(target, m);
            return m;
        }
    }

    private static Path scratch(String target) throws IOException {
        Path dir = Path.of(System.getProperty("java.io.tmpdir"), "peft4j-fuzz-" + ProcessHandle.current().pid(), target);
        if (STARTED.add(target)) {
            Files.createDirectories(dir);
            dir.toFile().deleteOnExit();
        }
        return dir;
    }

    private static void log(String target, String message) {
        if (LOG_DIR == null) {
            return;
        }
        LOGS.computeIfAbsent(target, k -> {
            try {
                Files.createDirectories(LOG_DIR);
                return new PrintWriter(Files.newBufferedWriter(LOG_DIR.resolve(k + ".rejected.txt"),
                        StandardCharsets.UTF_8), true);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }).println(message);
    }

    private static void summarise() {
        COUNTS.forEach((target, c) -> {
            long accepted = c[0].get();
            long rejected = c[1].get();
            String line = target + " inputs " + (accepted + rejected) + " accepted " + accepted + " rejected " + rejected;
            System.out.println("fuzz summary: " + line);
            try {
                Files.writeString(LOG_DIR.resolve(target + ".summary.txt"), line + "\n");
            } catch (IOException e) {
                System.err.println("cannot write the fuzz summary: " + e);
            }
        });
        LOGS.values().forEach(PrintWriter::close);
    }
}
