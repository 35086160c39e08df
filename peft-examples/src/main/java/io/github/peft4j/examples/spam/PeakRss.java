package io.github.peft4j.examples.spam;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The process's peak resident set size over a stretch of work. On Linux the kernel's high-water mark
 * ({@code VmHWM} in {@code /proc/self/status}) is reset by writing {@code 5} to {@code /proc/self/clear_refs} and
 * read at the end, which is exact; where that reset is refused, a daemon thread samples {@code VmRSS} every
 * 100 ms and the largest sample is reported. Off Linux the figure is unknown (-1).
 */
public final class PeakRss implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(PeakRss.class);
    private static final Path STATUS = Path.of("/proc/self/status");
    private static final Path CLEAR_REFS = Path.of("/proc/self/clear_refs");

    private final boolean kernelPeak;
    private final AtomicLong sampled = new AtomicLong(-1);
    private final Thread sampler;
    private volatile boolean running = true;

    /** Starts measuring now. */
    public PeakRss() {
        kernelPeak = resetHighWaterMark();
        if (kernelPeak || !Files.isReadable(STATUS)) {
            sampler = null;
        } else {
            sampler = new Thread(() -> {
                while (running) {
                    long now = readKb("VmRSS:");
                    sampled.accumulateAndGet(now, Math::max);
                    try {
                        Thread.sleep(100);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }, "peak-rss");
            sampler.setDaemon(true);
            sampler.start();
        }
    }

    private static boolean resetHighWaterMark() {
        try {
            Files.writeString(CLEAR_REFS, "5");
            return readKb("VmHWM:") > 0;
        } catch (IOException | RuntimeException e) {
            LOG.debug("cannot reset the RSS high-water mark ({}); sampling VmRSS instead", e.toString());
            return false;
        }
    }

    /** @return the peak RSS in bytes since construction, or -1 where it cannot be read */
    public long peakBytes() {
        long kb = kernelPeak ? readKb("VmHWM:") : Math.max(sampled.get(), readKb("VmRSS:"));
        return kb < 0 ? -1 : kb * 1024;
    }

    /** @return the current RSS in bytes, or -1 where it cannot be read */
    static long currentBytes() {
        long kb = readKb("VmRSS:");
        return kb < 0 ? -1 : kb * 1024;
    }

    private static long readKb(String key) {
        try {
            for (String line : Files.readAllLines(STATUS, StandardCharsets.US_ASCII)) {
                if (line.startsWith(key)) {
                    return Long.parseLong(line.substring(key.length()).replace("kB", "").trim());
                }
            }
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
        return -1;
    }

    @Override
    public void close() {
        running = false;
        if (sampler != null) {
            sampler.interrupt();
        }
    }
}
