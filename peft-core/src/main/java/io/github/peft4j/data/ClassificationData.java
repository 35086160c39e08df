package io.github.peft4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.OptionalInt;

/**
 * Reads text-classification data: JSON lines (or a JSON array) of objects with a text field and a label field,
 * or CSV with a header row naming the columns (RFC 4180 quoting: commas, newlines and doubled quotes inside
 * double-quoted fields). The format follows the file extension ({@code .csv} is CSV, anything else JSON).
 *
 * <p>Labels are strings (JSON numbers and booleans are taken as their text) mapped to ids by a {@link LabelMap}:
 * the given one (an unknown label is a bad record), or one built from the file's labels in sorted order.
 * Texts are encoded with the tokenizer's special tokens and cut to the maximum length keeping them.
 *
 * <pre>{@code
 * ClassificationData reader = ClassificationData.builder(tokenizer).maxLength(128).build();
 * Examples train = reader.read(Path.of("train.csv"));
 * Examples eval = reader.withLabels(train.labelMap()).read(Path.of("eval.csv"));
 * }</pre>
 */
public final class ClassificationData {
    private final Tokenizer tokenizer;
    private final int maxLength;
    private final String textField;
    private final String labelField;
    private final LabelMap labels;
    private final BadLinePolicy policy;

    private ClassificationData(Builder b) {
        this.tokenizer = Objects.requireNonNull(b.tokenizer, "tokenizer");
        this.maxLength = b.maxLength;
        this.textField = b.textField;
        this.labelField = b.labelField;
        this.labels = b.labels;
        this.policy = b.policy;
    }

    /**
     * @param tokenizer the tokenizer
     * @return a builder (text field {@code text}, label field {@code label}, no length limit, policy STOP)
     */
    public static Builder builder(Tokenizer tokenizer) {
        return new Builder(tokenizer);
    }

    /**
     * @param labelMap the label map to use (e.g. the training set's, for evaluation data)
     * @return a reader like this one that maps labels with {@code labelMap}
     */
    public ClassificationData withLabels(LabelMap labelMap) {
        Builder b = new Builder(tokenizer).maxLength(maxLength).textField(textField).labelField(labelField)
                .policy(policy).labels(labelMap);
        return b.build();
    }

    private record Raw(long line, String text, String label) {
    }

    /**
     * Reads a file.
     *
     * @param file a {@code .csv}, {@code .jsonl} or {@code .json} file
     * @return the examples ({@link Example#classified}) with the report and the label map used (null when no
     *     label map was given and the file has no good record)
     * @throws PeftException for an unreadable file, or for a bad record under {@link BadLinePolicy#STOP}
     */
    public Examples read(Path file) {
        ReadReport report = new ReadReport(file, policy);
        List<Raw> raws = new ArrayList<>();
        if (file.getFileName().toString().toLowerCase(Locale.ROOT).endsWith(".csv")) {
            readCsv(file, report, raws);
        } else {
            JsonRecords.forEach(file, report, (line, r) -> raws.add(new Raw(line, JsonRecords.text(r, textField),
                    labelOf(r))));
        }
        LabelMap map = labels != null ? labels
                : raws.isEmpty() ? null : LabelMap.sorted(raws.stream().map(Raw::label).toList());
        List<Example> out = new ArrayList<>();
        for (Raw raw : raws) {
            OptionalInt id = map.id(raw.label);
            if (id.isEmpty()) {
                report.bad(raw.line, "label \"" + raw.label + "\" is not one of the known labels " + map.labels());
                continue;
            }
            out.add(Example.classified(Truncation.encode(tokenizer, raw.text, maxLength, report), id.getAsInt()));
        }
        return new Examples(out, report, map);
    }

    private String labelOf(JsonNode r) {
        JsonNode v = r.get(labelField);
        if (v == null || v.isNull()) {
            throw new BadRecord("missing field \"" + labelField + "\" (expected a string or integer label)");
        }
        if (!(v.isTextual() || v.isIntegralNumber() || v.isBoolean())) {
            throw new BadRecord("field \"" + labelField + "\" must be a string or integer label, found "
                    + v.getNodeType());
        }
        String s = v.asText();
        if (s.isEmpty()) {
            throw new BadRecord("field \"" + labelField + "\" is empty");
        }
        return s;
    }

    private void readCsv(Path file, ReadReport report, List<Raw> raws) {
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            Csv csv = new Csv(in);
            Csv.Row header;
            try {
                header = csv.next();
            } catch (BadRecord e) {
                throw new PeftException(file + ":" + e.getMessage().substring("line ".length()));
            }
            if (header == null) {
                throw new PeftException(file + ": empty CSV file (expected a header row naming the columns "
                        + textField + " and " + labelField + ")");
            }
            List<String> names = header.fields().stream().map(s -> s.replace("\uFEFF", "").trim()).toList();
            int ti = names.indexOf(textField);
            int li = names.indexOf(labelField);
            if (ti < 0 || li < 0) {
                throw new PeftException(file + ":1: the header " + names + " must name the columns \"" + textField
                        + "\" and \"" + labelField + "\"");
            }
            while (true) {
                Csv.Row row;
                try {
                    row = csv.next();
                } catch (BadRecord e) {
                    // the parser cannot find the next row after an unclosed quote: stop whatever the policy
                    throw new PeftException(file + ":" + e.getMessage().substring("line ".length()));
                }
                if (row == null) {
                    break;
                }
                if (row.fields().size() == 1 && row.fields().get(0).isEmpty()) {
                    continue; // a blank line holds no record
                }
                report.record();
                if (row.fields().size() != names.size()) {
                    report.bad(row.line(), "expected " + names.size() + " fields as in the header, found "
                            + row.fields().size());
                    continue;
                }
                String text = row.fields().get(ti);
                String label = row.fields().get(li).trim();
                if (text.isBlank()) {
                    report.bad(row.line(), "column \"" + textField + "\" is empty");
                } else if (label.isEmpty()) {
                    report.bad(row.line(), "column \"" + labelField + "\" is empty");
                } else {
                    raws.add(new Raw(row.line(), text, label));
                }
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    /** Options of a {@link ClassificationData} reader. */
    public static final class Builder {
        private final Tokenizer tokenizer;
        private int maxLength;
        private String textField = "text";
        private String labelField = "label";
        private LabelMap labels;
        private BadLinePolicy policy = BadLinePolicy.STOP;

        private Builder(Tokenizer tokenizer) {
            this.tokenizer = tokenizer;
        }

        /** @param maxLength the most tokens per example, special tokens included (0 = no limit) @return this */
        public Builder maxLength(int maxLength) {
            if (maxLength < 0) {
                throw new IllegalArgumentException("maxLength must be >= 0, got " + maxLength);
            }
            this.maxLength = maxLength;
            return this;
        }

        /** @param name the text field or column (default {@code text}) @return this */
        public Builder textField(String name) {
            this.textField = name;
            return this;
        }

        /** @param name the label field or column (default {@code label}) @return this */
        public Builder labelField(String name) {
            this.labelField = name;
            return this;
        }

        /** @param labelMap a fixed label map (null: build one from each file read) @return this */
        public Builder labels(LabelMap labelMap) {
            this.labels = labelMap;
            return this;
        }

        /** @param policy what to do with malformed records (default STOP) @return this */
        public Builder policy(BadLinePolicy policy) {
            this.policy = Objects.requireNonNull(policy);
            return this;
        }

        /** @return the reader */
        public ClassificationData build() {
            return new ClassificationData(this);
        }
    }
}
