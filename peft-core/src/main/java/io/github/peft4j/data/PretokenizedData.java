package io.github.peft4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Reads already tokenized data: JSON lines (or a JSON array) of records with {@code "input_ids": [...]} and an
 * optional {@code "attention_mask": [0/1, ...]}, plus what the task learns:
 *
 * <ul>
 *   <li>causal LM (the default): optional {@code "labels": [token id or -100, ...]}; without labels every token
 *       whose mask is 1 is learned (labels = input ids, {@link Example#IGNORE} where the mask is 0);</li>
 *   <li>sequence classification: {@code "label": class} (an integer in {@code [0, num_labels)}; {@code "labels"}
 *       as one integer is accepted too, as HF's collators name it);</li>
 *   <li>token classification: {@code "labels": [class or -100 per token]}, as long as {@code input_ids}.</li>
 * </ul>
 *
 * A record that does not fit the task is a bad record (its file and line are named) when the data is read, so
 * a run never stops mid-training on a label.
 */
public final class PretokenizedData {
    private final int vocabSize;
    private final int maxLength;
    private final BadLinePolicy policy;
    private final TaskType task;
    private final int numLabels;

    /**
     * @param vocabSize ids must be in {@code [0, vocabSize)}; 0 skips the check
     * @param maxLength the most tokens per example (longer ones are cut at the end); 0 = no limit
     * @param policy what to do with malformed records
     */
    public PretokenizedData(int vocabSize, int maxLength, BadLinePolicy policy) {
        this(vocabSize, maxLength, policy, TaskType.CAUSAL_LM, 0);
    }

    /**
     * @param vocabSize ids must be in {@code [0, vocabSize)}; 0 skips the check
     * @param maxLength the most tokens per example (longer ones are cut at the end); 0 = no limit
     * @param policy what to do with malformed records
     * @param task what the records train: CAUSAL_LM (or null), SEQ_CLS or TOKEN_CLS
     * @param numLabels the classifier's label count (classes must be below it); 0 skips the check
     */
    public PretokenizedData(int vocabSize, int maxLength, BadLinePolicy policy, TaskType task, int numLabels) {
        if (vocabSize < 0 || maxLength < 0 || numLabels < 0) {
            throw new IllegalArgumentException("vocabSize, maxLength and numLabels must be >= 0, got " + vocabSize
                    + ", " + maxLength + ", " + numLabels);
        }
        TaskType t = task == null ? TaskType.CAUSAL_LM : task;
        if (t == TaskType.FEATURE_EXTRACTION) {
            throw new IllegalArgumentException("pre-tokenized data trains CAUSAL_LM, SEQ_CLS or TOKEN_CLS, not " + t);
        }
        this.vocabSize = vocabSize;
        this.maxLength = maxLength;
        this.policy = Objects.requireNonNull(policy, "policy");
        this.task = t;
        this.numLabels = numLabels;
    }

    /**
     * A reader for what a model trains: its task, vocabulary size and label count.
     *
     * @param model the model (CAUSAL_LM, SEQ_CLS or TOKEN_CLS)
     * @param maxLength the most tokens per example (longer ones are cut at the end); 0 = no limit
     * @param policy what to do with malformed records
     * @return the reader
     */
    public static PretokenizedData forModel(TransformerModel model, int maxLength, BadLinePolicy policy) {
        TaskType t = model.task();
        if (t == TaskType.FEATURE_EXTRACTION) {
            throw new PeftException(model.architecture() + " has no head to train with pre-tokenized data (a "
                    + t + " model); load it for causal-LM, sequence or token classification");
        }
        int labels = t == TaskType.CAUSAL_LM ? 0 : model.config().numLabels();
        return new PretokenizedData(model.vocabSize(), maxLength, policy, t, labels);
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
            int label = -1;
            int[] labels = null;
            switch (task) {
                case SEQ_CLS -> label = classLabel(r);
                case TOKEN_CLS -> labels = tokenLabels(r, ids.length);
                default -> labels = lmLabels(r, ids, mask);
            }
            if (maxLength > 0 && ids.length > maxLength) {
                report.truncatedOne();
                ids = Arrays.copyOf(ids, maxLength);
                labels = labels == null ? null : Arrays.copyOf(labels, maxLength);
                mask = mask == null ? null : Arrays.copyOf(mask, maxLength);
            }
            out.add(new Example(ids, mask, labels, label));
        });
        return new Examples(out, report, null);
    }

    /** Causal-LM labels: token ids or -100, else the input ids where the mask is 1. */
    private int[] lmLabels(JsonNode r, int[] ids, int[] mask) {
        if (r.has("label")) {
            throw new BadRecord("\"label\" is a class for seq-cls; a causal-LM record takes \"labels\": [token id or "
                    + Example.IGNORE + " per token] or none");
        }
        int[] labels = JsonRecords.ints(r, "labels", false);
        if (labels != null) {
            if (labels.length != ids.length) {
                throw new BadRecord("\"labels\" has " + labels.length + " entries, \"input_ids\" " + ids.length);
            }
            check("labels", labels, Example.IGNORE);
            return labels;
        }
        labels = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            labels[i] = mask != null && mask[i] == 0 ? Example.IGNORE : ids[i];
        }
        return labels;
    }

    /** Sequence classification: one class, {@code "label": int} (or {@code "labels": int}). */
    private int classLabel(JsonNode r) {
        JsonNode v = r.get("label");
        String field = "label";
        if (v == null || v.isNull()) {
            JsonNode alt = r.get("labels");
            if (alt != null && alt.isArray()) {
                throw new BadRecord("\"labels\" is a list, but seq-cls takes one class per record: \"label\": int"
                        + (numLabels > 0 ? " in 0.." + (numLabels - 1) : ""));
            }
            v = alt;
            field = "labels";
        }
        if (v == null || v.isNull()) {
            throw new BadRecord("missing field \"label\" (seq-cls takes one class per record: \"label\": int"
                    + (numLabels > 0 ? " in 0.." + (numLabels - 1) : "") + ")");
        }
        if (!v.isIntegralNumber() || !v.canConvertToInt()) {
            throw new BadRecord("field \"" + field + "\" must be an integer class, found " + v);
        }
        int c = v.intValue();
        if (c < 0 || (numLabels > 0 && c >= numLabels)) {
            throw new BadRecord("\"" + field + "\" = " + c + " is out of range (the classifier has " + numLabels
                    + " labels: expected 0.." + (numLabels - 1) + ")");
        }
        return c;
    }

    /** Token classification: {@code "labels": [class or -100 per token]}. */
    private int[] tokenLabels(JsonNode r, int length) {
        if (r.has("label")) {
            throw new BadRecord("\"label\" is one class per record (seq-cls); token-cls takes \"labels\": [class or "
                    + Example.IGNORE + " per token]");
        }
        JsonNode v = r.get("labels");
        if (v == null || v.isNull()) {
            throw new BadRecord("missing field \"labels\" (token-cls takes \"labels\": [class or " + Example.IGNORE
                    + " per token])");
        }
        int[] labels = JsonRecords.ints(r, "labels", true);
        if (labels.length != length) {
            throw new BadRecord("\"labels\" has " + labels.length + " entries, \"input_ids\" " + length
                    + " (token-cls takes one class or " + Example.IGNORE + " per token)");
        }
        for (int i = 0; i < labels.length; i++) {
            int c = labels[i];
            if (c != Example.IGNORE && (c < 0 || (numLabels > 0 && c >= numLabels))) {
                throw new BadRecord("\"labels\"[" + i + "] = " + c + " is out of range (expected "
                        + (numLabels > 0 ? "0.." + (numLabels - 1) : ">= 0") + " or " + Example.IGNORE + ")");
            }
        }
        return labels;
    }

    private void check(String field, int[] values, int allowed) {
        for (int i = 0; i < values.length; i++) {
            int v = values[i];
            if (v != allowed && (v < 0 || (vocabSize > 0 && v >= vocabSize))) {
                throw new BadRecord("\"" + field + "\"[" + i + "] = " + v + " is out of range (expected "
                        + (vocabSize > 0 ? "0.." + (vocabSize - 1) : ">= 0") + (allowed < 0 ? " or " + allowed : "")
                        + ")");
            }
        }
    }
}
