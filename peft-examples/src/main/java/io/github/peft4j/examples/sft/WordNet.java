package io.github.peft4j.examples.sft;

import io.github.peft4j.PeftException;
import io.github.peft4j.examples.fetch.PinnedFile;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.commons.compress.archivers.ar.ArArchiveEntry;
import org.apache.commons.compress.archivers.ar.ArArchiveInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.xz.XZCompressorInputStream;

/**
 * Princeton WordNet 3.0 as Debian packages it ({@value #PACKAGE} {@value #VERSION}, an {@code ar} archive whose
 * {@code data.tar.xz} holds {@code usr/share/wordnet/index.*} and {@code data.*}), fetched from the Debian mirror
 * (falling back to {@code apt-get download}), pinned by SHA-256 and cached.
 *
 * <p>Read: for each part of speech, the lemmas of the index with their synsets in WordNet's sense order (most
 * frequent first) and tagged-sense count, and each synset's gloss split into its definition and its quoted example
 * sentences.
 */
public final class WordNet {
    /** The Debian package. */
    public static final String PACKAGE = "wordnet-base";
    /** The pinned version (epoch 1). */
    public static final String VERSION = "1:3.0-37";
    /** Its SHA-256, as the Debian archive's Packages index lists it. */
    public static final String SHA256 = "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752";
    /** Where it is on the Debian mirror. */
    public static final String URL = "http://deb.debian.org/debian/pool/main/w/wordnet/wordnet-base_3.0-37_all.deb";
    /** The parts of speech read, by WordNet file suffix. */
    public static final List<String> POS = List.of("noun", "verb", "adj");
    private static final String DIR = "./usr/share/wordnet/";
    private static final Pattern QUOTED = Pattern.compile("\"([^\"]+)\"");

    /**
     * One synset's gloss.
     *
     * @param definition the text before the first example
     * @param examples the quoted example sentences
     */
    public record Gloss(String definition, List<String> examples) {}

    /**
     * One index lemma.
     *
     * @param lemma the lemma ({@code _} for spaces)
     * @param pos noun, verb or adj
     * @param tagsenseCount how many of its senses are tagged in the semantic concordance (a frequency hint)
     * @param senses its synsets' glosses, most frequent sense first
     */
    public record Entry(String lemma, String pos, int tagsenseCount, List<Gloss> senses) {}

    private WordNet() {}

    /**
     * The pinned package.
     *
     * @param cacheRoot the cache root, or null for {@code ~/.cache/peft4j/wordnet}
     * @return the pinned file
     */
    public static PinnedFile deb(Path cacheRoot) {
        Path root = cacheRoot != null ? cacheRoot : PinnedFile.defaultCache("wordnet");
        return new PinnedFile(root.resolve("3.0-37"), "wordnet-base_3.0-37_all.deb", "sha256:" + SHA256,
                PinnedFile.http(URL, PACKAGE + "=" + VERSION));
    }

    /**
     * Reads the index and data files of a {@code wordnet-base} .deb.
     *
     * @param deb the package file
     * @return the entries by part of speech, in index order
     * @throws PeftException naming the file when it is not such a package
     */
    public static Map<String, List<Entry>> read(Path deb) {
        Map<String, byte[]> files = new HashMap<>();
        try (ArArchiveInputStream ar = new ArArchiveInputStream(new BufferedInputStream(Files.newInputStream(deb)))) {
            boolean found = false;
            for (ArArchiveEntry e; (e = ar.getNextEntry()) != null; ) {
                if (e.getName().equals("data.tar.xz")) {
                    found = true;
                    readTar(ar, files);
                }
            }
            if (!found) {
                throw new PeftException(deb + ": no data.tar.xz member; expected a Debian binary package");
            }
        } catch (IOException e) {
            throw new PeftException(deb + ": cannot read the Debian package: " + e.getMessage(), e);
        }
        Map<String, List<Entry>> out = new LinkedHashMap<>();
        for (String pos : POS) {
            byte[] index = files.get("index." + pos);
            byte[] data = files.get("data." + pos);
            if (index == null || data == null) {
                throw new PeftException(deb + ": no " + DIR + "index." + pos + " / data." + pos);
            }
            out.put(pos, entries(deb, pos, index, data));
        }
        return out;
    }

    private static void readTar(InputStream in, Map<String, byte[]> files) throws IOException {
        TarArchiveInputStream tar = new TarArchiveInputStream(new XZCompressorInputStream(in));
        for (TarArchiveEntry e; (e = tar.getNextEntry()) != null; ) {
            String name = e.getName();
            if (e.isFile() && name.startsWith(DIR) && (name.contains("/index.") || name.contains("/data."))) {
                files.put(name.substring(DIR.length()), tar.readAllBytes());
            }
        }
    }

    private static List<Entry> entries(Path deb, String pos, byte[] index, byte[] data) {
        List<Entry> out = new ArrayList<>();
        String text = new String(index, StandardCharsets.ISO_8859_1);
        int lineNo = 0;
        for (String line : text.split("\n")) {
            lineNo++;
            if (line.isEmpty() || line.startsWith(" ")) {
                continue; // the licence header
            }
            String[] f = line.trim().split(" +");
            try {
                int synsets = Integer.parseInt(f[2]);
                int pointers = Integer.parseInt(f[3]);
                int tagsense = Integer.parseInt(f[5 + pointers]);
                List<Gloss> senses = new ArrayList<>();
                for (int k = 0; k < synsets; k++) {
                    senses.add(gloss(deb, pos, data, Long.parseLong(f[6 + pointers + k])));
                }
                out.add(new Entry(f[0], pos, tagsense, senses));
            } catch (RuntimeException e) {
                if (e instanceof PeftException p) {
                    throw p;
                }
                throw new PeftException(deb + ": " + DIR + "index." + pos + " line " + lineNo + " is not a WordNet index"
                        + " line (" + e + ")");
            }
        }
        return out;
    }

    /** The gloss of the data line at a byte offset (WordNet's synset offsets are byte offsets into data.pos). */
    private static Gloss gloss(Path deb, String pos, byte[] data, long offset) {
        if (offset < 0 || offset >= data.length) {
            throw new PeftException(deb + ": " + DIR + "data." + pos + " has no synset at offset " + offset + " (the file"
                    + " has " + data.length + " bytes)");
        }
        int at = (int) offset;
        int end = at;
        while (end < data.length && data[end] != '\n') {
            end++;
        }
        String line = new String(data, at, end - at, StandardCharsets.ISO_8859_1);
        if (!line.startsWith(String.format("%08d ", offset))) {
            throw new PeftException(deb + ": " + DIR + "data." + pos + " has no synset at offset " + offset);
        }
        int bar = line.indexOf(" | ");
        String g = bar < 0 ? "" : line.substring(bar + 3).trim();
        List<String> examples = new ArrayList<>();
        Matcher m = QUOTED.matcher(g);
        while (m.find()) {
            examples.add(m.group(1).trim());
        }
        int quote = g.indexOf('"');
        String def = (quote < 0 ? g : g.substring(0, quote)).trim();
        while (def.endsWith(";") || def.endsWith(":") || def.endsWith(",")) {
            def = def.substring(0, def.length() - 1).trim();
        }
        return new Gloss(def, examples);
    }
}
