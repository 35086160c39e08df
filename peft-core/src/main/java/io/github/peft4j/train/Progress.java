package io.github.peft4j.train;

import java.io.PrintStream;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The training progress line: step/total, loss, learning rate, tokens/s and ETA. On a terminal it is one
 * line on stderr redrawn with {@code \r}; otherwise it is an SLF4J info line every {@code every} steps. Other loops
 * (LoRAHub's search) draw their own fields with {@link #show}.
 */
public final class Progress {
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

    /**
     * @param startStep the step the run starts at
     * @param total the last step
     * @param every log every N steps when not on a terminal
     * @return a progress writer for stderr when it is a terminal, else for the log
     */
    public static Progress auto(long startStep, long total, int every) {
        return new Progress(startStep, total, every, System.console() != null ? System.err : null);
    }

    /** Formats the line. */
    String line(long step, double loss, double lr, double tokensPerSecond) {
        return line(step, String.format(Locale.ROOT, "loss %.4f lr %.3e %.0f tok/s", loss, lr, tokensPerSecond));
    }

    /** {@code [bar] step/total <fields> ETA m:ss}. */
    private String line(long step, String fields) {
        double elapsed = (System.nanoTime() - startNanos) / 1e9;
        long done = step - startStep;
        double eta = done > 0 ? elapsed / done * (total - step) : Double.NaN;
        int width = 20;
        int filled = total > 0 ? (int) (width * step / total) : 0;
        String bar = "#".repeat(Math.min(width, filled)) + ".".repeat(Math.max(0, width - filled));
        return String.format(Locale.ROOT, "[%s] %d/%d %s ETA %s", bar, step, total, fields, Double.isNaN(eta) ? "?" : clock(eta));
    }

    /** @return the seconds since this progress was made */
    public double elapsedSeconds() {
        return (System.nanoTime() - startNanos) / 1e9;
    }

    /**
     * Shows a finished step with the caller's fields ({@code [bar] step/total <fields> ETA m:ss}).
     *
     * @param step the step
     * @param fields what to show after the count (e.g. {@code loss 0.4 3.1 eval/s})
     */
    public void show(long step, String fields) {
        draw(step, line(step, fields));
    }

    static String clock(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }

    /** Shows a finished step. */
    void update(long step, double loss, double lr, double tokensPerSecond) {
        draw(step, line(step, loss, lr, tokensPerSecond));
    }

    private void draw(long step, String line) {
        if (terminal != null) {
            terminal.print("\r" + line);
            terminal.flush();
            drawn = true;
        } else if (step % every == 0 || step == total) {
            LOG.info(line);
        }
    }

    /** Ends the redrawn line before other output. */
    public void breakLine() {
        if (terminal != null && drawn) {
            terminal.println();
            drawn = false;
        }
    }
}
