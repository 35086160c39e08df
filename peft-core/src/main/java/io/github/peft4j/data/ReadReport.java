package io.github.peft4j.data;

import io.github.peft4j.PeftException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a dataset reader did with a file: how many records it read, which it skipped and why, and how many
 * examples it truncated to the maximum length.
 */
public final class ReadReport {
    private static final Logger LOG = LoggerFactory.getLogger(ReadReport.class);

    private final Path file;
    private final BadLinePolicy policy;
    private final List<String> skipped = new ArrayList<>();
    private int records;
    private int truncated;
    private int examples;

    ReadReport(Path file, BadLinePolicy policy) {
        this.file = file;
        this.policy = policy;
    }

    /** @return the file read */
    public Path file() {
        return file;
    }

    /** @return the number of records seen (good and bad) */
    public int records() {
        return records;
    }

    /** @return the number of examples produced (fewer than the records when some were skipped or packed) */
    public int examples() {
        return examples;
    }

    /** @return the skipped records, each as {@code "file:line: what was expected"} */
    public List<String> skipped() {
        return Collections.unmodifiableList(skipped);
    }

    /** @return the number of examples cut to the maximum length */
    public int truncated() {
        return truncated;
    }

    void record() {
        records++;
    }

    void truncatedOne() {
        truncated++;
    }

    /**
     * A malformed record: thrown under {@link BadLinePolicy#STOP}, listed under {@link BadLinePolicy#SKIP}.
     *
     * @param line the 1-based line where the record starts
     * @param what what was expected and found
     */
    void bad(long line, String what) {
        String message = file + ":" + line + ": " + what;
        if (policy == BadLinePolicy.STOP) {
            throw new PeftException(message);
        }
        skipped.add(message);
    }

    ReadReport finish(int exampleCount) {
        this.examples = exampleCount;
        if (!skipped.isEmpty()) {
            LOG.warn("{}: skipped {} of {} records (first: {})", file, skipped.size(), records, skipped.get(0));
        }
        if (truncated > 0) {
            LOG.info("{}: truncated {} examples to the maximum length", file, truncated);
        }
        return this;
    }

    @Override
    public String toString() {
        return file + ": " + records + " records, " + examples + " examples, " + skipped.size() + " skipped, "
                + truncated + " truncated";
    }
}
