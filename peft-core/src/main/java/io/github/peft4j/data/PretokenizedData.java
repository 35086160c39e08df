package io.github.peft4j.data;

import io.github.peft4j.PeftException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Reads already tokenized data: JSON lines (or a JSON array) of
 * {@code {"input_ids": [...], "attention_mask": [...], "labels": [...]}}. {@code attention_mask} (0/1) and
 * {@code labels} are optional; without labels every token whose mask is 1 is learned (labels = input ids,
 * {@link Example#IGNORE} where the mask is 0). Labels are token ids or {@link Example#IGNORE}.
 */
public final class PretokenizedData {
    private final int vocabSize;
    private final int maxLength;
    private final BadLinePolicy policy;

    /**
     * @param vocabSize ids must be in {@code [0, vocabSize)}; 0 skips the check
     * @param maxLength the most tokens per example (longer ones are cut at the end); 0 = no limit
     * @param policy what to do with malformed records
     */
    public PretokenizedData(int vocabSize, int maxLength, BadLinePolicy policy) {
        if (vocabSize < 0 || maxLength < 0) {
            throw new IllegalArgumentException("vocabSize and maxLength must be >= 0, got " + vocabSize + ", "
                    + maxLength);
        }
        this.vocabSize = vocabSize;
        this.maxLength = maxLength;
        this.policy = Objects.requireNonNull(policy, "policy");
    }

    /**
     * Reads a file.
     *
     * @param file a JSON lines file
     * @return the examples with the report
     * @throws PeftException for an unreadable file, or for a bad record under {@link BadLinePolicy#STOP}
     */
    public Examples read(Path file) {
        ReadReport report = new ReadReport(file, policy);
        List<Example> out = new ArrayList<>();
        JsonRecords.forEach(file, report, (line, r) -> {
            int[] ids = JsonRecords.ints(r, "input_ids", true);
            int[] mask = JsonRecords.ints(r, "attention_mask", false);
            int[] labels = JsonRecords.ints(r, "labels", false);
            if (ids.length == 0) {
                throw new BadRecord("\"input_ids\" is empty");
            }
            check("input_ids", ids, 0);
            if (mask != null) {
                if (mask.length != ids.length) {
                    throw new BadRecord("\"attention_mask\" has " + mask.length + " entries, \"input_ids\" "
                            + ids.length);
                }
                for (int i = 0; i < mask.length; i++) {
                    if (mask[i] != 0 && mask[i] != 1) {
                        throw new BadRecord("\"attention_mask\"[" + i + "] must be 0 or 1, found " + mask[i]);
                    }
                }
            }
            if (labels != null) {
                if (labels.length != ids.length) {
                    throw new BadRecord("\"labels\" has " + labels.length + " entries, \"input_ids\" " + ids.length);
                }
                check("labels", labels, Example.IGNORE);
            } else {
                labels = new int[ids.length];
                for (int i = 0; i < ids.length; i++) {
                    labels[i] = mask != null && mask[i] == 0 ? Example.IGNORE : ids[i];
                }
            }
            if (maxLength > 0 && ids.length > maxLength) {
                report.truncatedOne();
                ids = Arrays.copyOf(ids, maxLength);
                labels = Arrays.copyOf(labels, maxLength);
                mask = mask == null ? null : Arrays.copyOf(mask, maxLength);
            }
            out.add(new Example(ids, mask, labels, -1));
        });
        return new Examples(out, report, null);
    }

    private void check(String field, int[] values, int allowed) {
        for (int i = 0; i < values.length; i++) {
            int v = values[i];
            if (v != allowed && (v < 0 || (vocabSize > 0 && v >= vocabSize))) {
                throw new BadRecord("\"" + field + "\"[" + i + "] = " + v + " is out of range (expected 0.."
                        + (vocabSize > 0 ? vocabSize - 1 : "") + (allowed < 0 ? " or " + allowed : "") + ")");
            }
        }
    }
}
