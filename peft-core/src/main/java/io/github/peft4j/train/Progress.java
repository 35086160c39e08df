package io.github.peft4j.train;

import java.io.PrintStream;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The training progress line: step/total, loss, learning rate, tokens/s and ETA. On a terminal it is one
 * line on stderr redrawn with {@code \r}; otherwise it is an SLF4J info line every {@code every} steps.
 */
final class Progress {
    private static final Logger LOG = LoggerFactory.getLogger(PeftTrainer.class);

    private final long total;
    private final int every;
    private final PrintStream terminal;
    private final long startNanos = System.nanoTime();
    private final long startStep;
    private boolean drawn;

    /**
     * @param startStep the step the run starts at (after a resume, the checkpoint's)
     * @param total the last step
     * @param every log every N steps when not on a terminal
     * @param terminal where to redraw the line, or null to log instead
     */
    Progress(long startStep, long total, int every, PrintStream terminal) {
        this.startStep = startStep;
        this.total = total;
        this.every = Math.max(1, every);
        this.terminal = terminal;
    }

    /** @return a progress writer for stderr when it is a terminal, else for the log */
    static Progress auto(long startStep, long total, int every) {
        return new Progress(startStep, total, every, System.console() != null ? System.err : null);
    }

    /** Formats the line. */
    String line(long step, double loss, double lr, double tokensPerSecond) {
        double elapsed = (System.nanoTime() - startNanos) / 1e9;
        long done = step - startStep;
        double eta = done > 0 ? elapsed / done * (total - step) : Double.NaN;
        int width = 20;
        int filled = total > 0 ? (int) (width * step / total) : 0;
        String bar = "#".repeat(Math.min(width, filled)) + ".".repeat(Math.max(0, width - filled));
        return String.format(Locale.ROOT, "[%s] %d/%d loss %.4f lr %.3e %.0f tok/s ETA %s", bar, step, total, loss, lr,
                tokensPerSecond, Double.isNaN(eta) ? "?" : clock(eta));
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }

    /** Shows a finished step. */
    void update(long step, double loss, double lr, double tokensPerSecond) {
        if (terminal != null) {
            terminal.print("\r" + line(step, loss, lr, tokensPerSecond));
            terminal.flush();
            drawn = true;
        } else if (step % every == 0 || step == total) {
            LOG.info(line(step, loss, lr, tokensPerSecond));
        }
    }

    /** Ends the redrawn line before other output. */
    void breakLine() {
        if (terminal != null && drawn) {
            terminal.println();
            drawn = false;
        }
    }
}
