package io.github.peft4j.data;

import io.github.peft4j.PeftException;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.OptionalInt;

/**
 * Reads token-classification (NER) data in CoNLL format: one token per line, whitespace-separated columns with
 * the word first and its label last, a blank line between sentences, {@code -DOCSTART-} lines skipped. Labels
 * are BIO tags ({@code O}, {@code B-X}, {@code I-X}).
 *
 * <p>Each sentence is encoded as words ({@link Tokenizer#encodeWords}); the first sub-token of each word carries
 * the word's label id, the other sub-tokens and the special tokens carry {@link Example#IGNORE} (as HF's
 * token-classification example). Sentences longer than the maximum length are cut keeping the trailing special
 * tokens. A malformed line (one column, a tag that is not BIO, an unknown label) makes its whole sentence a bad
 * record reported at that line.
 */
public final class ConllData {
    private final Tokenizer tokenizer;
    private final int maxLength;
    private final LabelMap labels;
    private final BadLinePolicy policy;

    private ConllData(Tokenizer tokenizer, int maxLength, LabelMap labels, BadLinePolicy policy) {
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
        if (maxLength < 0) {
            throw new IllegalArgumentException("maxLength must be >= 0, got " + maxLength);
        }
        this.maxLength = maxLength;
        this.labels = labels;
        this.policy = Objects.requireNonNull(policy, "policy");
    }

    /**
     * @param tokenizer the tokenizer
     * @param maxLength the most tokens per example, special tokens included (0 = no limit)
     * @param labels a fixed label map (e.g. the training set's, for evaluation data), or null to build one
     *     from the file's tags in sorted order
     * @param policy what to do with malformed sentences
     * @return the reader
     */
    public static ConllData of(Tokenizer tokenizer, int maxLength, LabelMap labels, BadLinePolicy policy) {
        return new ConllData(tokenizer, maxLength, labels, policy);
    }

    /**
     * @param labelMap the label map to use
     * @return a reader like this one with a fixed label map
     */
    public ConllData withLabels(LabelMap labelMap) {
        return new ConllData(tokenizer, maxLength, labelMap, policy);
    }

    private record Sentence(List<Long> lines, List<String> words, List<String> tags) {
    }

    /**
     * Reads a file.
     *
     * @param file a CoNLL file
     * @return one example per sentence ({@link Example#labelled}), with the report and the label map used
     * @throws PeftException for an unreadable file, or for a bad line under {@link BadLinePolicy#STOP}
     */
    public Examples read(Path file) {
        ReadReport report = new ReadReport(file, policy);
        List<Sentence> sentences = parse(file, report);
        List<String> all = new ArrayList<>();
        sentences.forEach(s -> all.addAll(s.tags));
        LabelMap map = labels != null ? labels : all.isEmpty() ? null : LabelMap.sorted(all);
        List<Example> out = new ArrayList<>();
        for (Sentence s : sentences) {
            int[] ids = new int[s.tags.size()];
            boolean ok = true;
            for (int i = 0; i < ids.length && ok; i++) {
                OptionalInt id = map.id(s.tags.get(i));
                if (id.isEmpty()) {
                    report.bad(s.lines.get(i), "label \"" + s.tags.get(i) + "\" is not one of the known labels "
                            + map.labels());
                    ok = false;
                } else {
                    ids[i] = id.getAsInt();
                }
            }
            if (ok) {
                out.add(align(s.words, ids, report));
            }
        }
        return new Examples(out, report, map);
    }

    /** Encodes the words and puts each word's label on its first sub-token. */
    private Example align(List<String> words, int[] wordLabels, ReadReport report) {
        return alignWords(tokenizer, words, wordLabels, maxLength, report::truncatedOne);
    }

    /**
     * Token-classification labels as HF's token-classification example aligns them: the words are encoded
     * ({@link Tokenizer#encodeWords}), the first sub-token of each word carries the word's label, the other sub-tokens
     * and the special tokens carry {@link Example#IGNORE}. Longer than {@code maxLength}, the encoding is cut keeping
     * the trailing special tokens.
     *
     * @param tokenizer the tokenizer
     * @param words the words of one sentence
     * @param wordLabels one label id per word
     * @param maxLength the most tokens, special tokens included (0 = no limit)
     * @param onTruncate called once when the encoding was cut
     * @return the labelled example
     */
    public static Example alignWords(Tokenizer tokenizer, List<String> words, int[] wordLabels, int maxLength,
            Runnable onTruncate) {
        if (wordLabels.length != words.size()) {
            throw new IllegalArgumentException(words.size() + " words but " + wordLabels.length + " labels");
        }
        Tokenizer.WordEncoding enc = tokenizer.encodeWords(words, true);
        int[] ids = enc.ids();
        int[] wordIds = enc.wordIds();
        int[] labels = new int[ids.length];
        int previous = -1;
        for (int i = 0; i < ids.length; i++) {
            int w = wordIds[i];
            labels[i] = w < 0 || w == previous ? Example.IGNORE : wordLabels[w];
            if (w >= 0) {
                previous = w;
            }
        }
        if (maxLength > 0 && ids.length > maxLength) {
            onTruncate.run();
            int suffix = 0;
            while (suffix < ids.length && wordIds[ids.length - 1 - suffix] < 0) {
                suffix++;
            }
            if (suffix >= maxLength) {
                suffix = 0;
            }
            int keep = maxLength - suffix;
            int[] ti = Arrays.copyOf(ids, maxLength);
            int[] tl = Arrays.copyOf(labels, maxLength);
            System.arraycopy(ids, ids.length - suffix, ti, keep, suffix);
            System.arraycopy(labels, ids.length - suffix, tl, keep, suffix);
            ids = ti;
            labels = tl;
        }
        return Example.labelled(ids, labels);
    }

    private static List<Sentence> parse(Path file, ReadReport report) {
        List<Sentence> out = new ArrayList<>();
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            List<String> words = new ArrayList<>();
            List<String> tags = new ArrayList<>();
            List<Long> lines = new ArrayList<>();
            long start = 0;
            long badLine = 0;
            String badWhat = null;
            long lineNo = 0;
            String line;
            while (true) {
                line = in.readLine();
                lineNo++;
                boolean end = line == null || line.isBlank();
                if (end) {
                    if (start > 0) {
                        report.record();
                        if (badWhat != null) {
                            report.bad(badLine, badWhat);
                        } else {
                            out.add(new Sentence(List.copyOf(lines), List.copyOf(words), List.copyOf(tags)));
                        }
                    }
                    words.clear();
                    tags.clear();
                    lines.clear();
                    start = 0;
                    badWhat = null;
                    if (line == null) {
                        return out;
                    }
                    continue;
                }
                String[] cols = line.strip().split("\\s+");
                if (cols[0].equals("-DOCSTART-")) {
                    continue;
                }
                if (start == 0) {
                    start = lineNo;
                }
                if (badWhat != null) {
                    continue;
                }
                String tag = cols[cols.length - 1];
                if (cols.length < 2) {
                    badLine = lineNo;
                    badWhat = "expected a token and its label separated by whitespace, found one column \""
                            + cols[0] + "\"";
                } else if (!tag.equals("O") && !(tag.length() > 2 && (tag.startsWith("B-") || tag.startsWith("I-")))) {
                    badLine = lineNo;
                    badWhat = "label \"" + tag + "\" is not a BIO tag (O, B-<type> or I-<type>)";
                } else {
                    words.add(cols[0]);
                    tags.add(tag);
                    lines.add(lineNo);
                }
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
    }
}
