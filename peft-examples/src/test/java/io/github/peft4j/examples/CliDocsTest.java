package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * docs/cli.md is the rendering of the command definitions, and its cheap examples (tiny fixtures) work: each
 * {@code $ ./peft4j ...} line in the help of {@code logits}, {@code info}, {@code generate}, {@code merge} and
 * {@code train} is run
 * in-process, and the output shown under it must appear, line by line and in order, in what the command printed
 * (a line ending in {@code ...} matches any line that starts with the text before it).
 */
class CliDocsTest {
    /** Commands whose examples are run; the others download data, import a 90 MB model or time steps. */
    private static final Set<String> RUN = Set.of("logits", "info", "generate", "merge", "train");
    private static final Path ROOT = Fixtures.root().resolve("../../../../../..").normalize();

    @TempDir
    Path tmp;

    @Test
    void committedPageEqualsTheRendering() throws IOException {
        String committed = Files.readString(ROOT.resolve("docs/cli.md"));
        String rendered = CliDocs.render();
        if (!committed.equals(rendered)) {
            String[] a = committed.split("\n", -1);
            String[] b = rendered.split("\n", -1);
            int i = 0;
            while (i < Math.min(a.length, b.length) && a[i].equals(b[i])) {
                i++;
            }
            fail("docs/cli.md is stale (first difference at line " + (i + 1) + ": committed '"
                    + (i < a.length ? a[i] : "<end>") + "', rendered '" + (i < b.length ? b[i] : "<end>")
                    + "'); regenerate it from the repository root: mvn -B -ntp -q package -DskipTests && " + CliDocs.REGENERATE);
        }
    }

    /**
     * One example: a shell line and the output shown under it, in the section of a command.
     *
     * @param section the command whose help shows it
     * @param line the shell line
     * @param output the lines shown under it
     */
    private record Example(String section, String line, List<String> output) {}

    private static List<Example> examples(String md) {
        List<Example> out = new ArrayList<>();
        boolean inBlock = false;
        String section = "";
        String[] lines = md.split("\n");
        for (int i = 0; i < lines.length; i++) {
            String l = lines[i];
            if (l.startsWith("## `peft4j")) {
                section = l.replaceAll("^## `peft4j ?|`$", "");
            }
            if (l.startsWith("```")) {
                inBlock = !inBlock;
                continue;
            }
            Matcher m = Pattern.compile("^\\s*\\$ (.*)$").matcher(l);
            if (!inBlock || !m.matches()) {
                continue;
            }
            StringBuilder cmd = new StringBuilder(m.group(1).strip());
            while (cmd.toString().endsWith("\\") && i + 1 < lines.length) {
                cmd.setLength(cmd.length() - 1);
                cmd.append(' ').append(lines[++i].strip());
            }
            List<String> shown = new ArrayList<>();
            while (i + 1 < lines.length && !lines[i + 1].isBlank() && !lines[i + 1].startsWith("```")
                    && !lines[i + 1].strip().startsWith("$ ") && !lines[i + 1].strip().startsWith("(")) {
                shown.add(lines[++i].strip());
            }
            out.add(new Example(section, cmd.toString().replaceAll("\\s+", " "), shown));
        }
        return out;
    }

    @Test
    void documentedExamplesRunAndPrintWhatIsShown() throws Exception {
        List<Example> all = examples(Files.readString(ROOT.resolve("docs/cli.md")));
        Map<String, String> vars = new HashMap<>();
        Path gen = tmp.resolve("gen");
        Files.createDirectories(gen);
        int ran = 0;
        for (Example e : all) {
            List<String> words = words(e.line(), vars);
            if (words.isEmpty()) {
                continue;
            }
            String w0 = words.get(0);
            if (w0.matches("[A-Z]+=.*")) {
                vars.put(w0.substring(0, w0.indexOf('=')), w0.substring(w0.indexOf('=') + 1));
                continue;
            }
            List<String> args = words.stream().map(w -> path(w, gen)).toList();
            String printed;
            switch (w0) {
                case "mkdir" -> {
                    Files.createDirectories(Path.of(args.get(args.size() - 1)));
                    continue;
                }
                case "cp" -> {
                    Path dir = Path.of(args.get(args.size() - 1));
                    for (String f : args.subList(1, args.size() - 1)) {
                        Files.copy(Path.of(f), dir.resolve(Path.of(f).getFileName()));
                    }
                    continue;
                }
                case "echo" -> {
                    assertEquals(">", words.get(words.size() - 2), e.line());
                    Files.writeString(Path.of(args.get(args.size() - 1)), String.join(" ", words.subList(1, words.size() - 2)) + "\n");
                    continue;
                }
                case "cat" -> printed = Files.readString(Path.of(args.get(1)));
                case "ls" -> {
                    try (Stream<Path> s = Files.list(Path.of(args.get(1)))) {
                        printed = String.join("  ", s.map(p -> p.getFileName().toString()).sorted().toList());
                    }
                }
                case "./peft4j" -> {
                    if (!RUN.contains(e.section()) || e.line().contains(">") || e.line().contains("#")) {
                        continue;
                    }
                    CliResult r = CliResult.run(args.subList(1, args.size()).toArray(String[]::new));
                    boolean error = e.output().stream().anyMatch(o -> o.startsWith("peft4j: "));
                    assertEquals(error ? 2 : 0, r.status(), e.line() + "\n" + r.out() + r.err());
                    printed = r.out() + r.err();
                    ran++;
                }
                default -> {
                    continue; // source <(...) and the like: for a real shell
                }
            }
            String actual = printed.replace(gen.toString(), "/tmp/gen").replace(ROOT + "/", "");
            assertShown(e, actual);
        }
        System.out.println("ran " + ran + " documented peft4j examples");
        assertTrue(ran >= 12, "only " + ran + " examples ran");
    }

    private static void assertShown(Example e, String actual) {
        List<String> got = actual.lines().map(String::strip).toList();
        int at = 0;
        for (String want : e.output()) {
            boolean prefix = want.endsWith("...");
            String w = prefix ? want.substring(0, want.length() - 3) : want;
            while (at < got.size() && !(prefix ? got.get(at).startsWith(w) : got.get(at).equals(w))) {
                at++;
            }
            assertTrue(at < got.size(), "'" + e.line() + "' does not print the documented line\n  " + want
                    + "\nit printed:\n" + actual);
            at++;
        }
    }

    /** Maps /tmp/gen to the test's directory and repository-relative paths to the repository. */
    private static String path(String w, Path gen) {
        String s = w.replace("/tmp/gen", gen.toString());
        return s.replaceAll("(^|=)(peft-core/)", "$1" + Matcher.quoteReplacement(ROOT.toString()) + "/$2");
    }

    /** Splits a shell line into words: $VAR expansion, '...' and "..." quoting. */
    private static List<String> words(String line, Map<String, String> vars) {
        List<String> out = new ArrayList<>();
        StringBuilder w = new StringBuilder();
        boolean any = false;
        for (int i = 0; i < line.length(); i++) {
            char c = line.charAt(i);
            if (c == '\'') {
                int end = line.indexOf('\'', i + 1);
                w.append(line, i + 1, end);
                i = end;
                any = true;
            } else if (c == '"') {
                int end = line.indexOf('"', i + 1);
                w.append(expand(line.substring(i + 1, end), vars));
                i = end;
                any = true;
            } else if (c == ' ') {
                if (any || w.length() > 0) {
                    out.add(w.toString());
                }
                w.setLength(0);
                any = false;
            } else if (c == '$' && i + 1 < line.length() && Character.isLetter(line.charAt(i + 1))) {
                int end = i + 1;
                while (end < line.length() && (Character.isLetterOrDigit(line.charAt(end)) || line.charAt(end) == '_')) {
                    end++;
                }
                w.append(vars.getOrDefault(line.substring(i + 1, end), ""));
                i = end - 1;
            } else {
                w.append(c);
            }
        }
        if (any || w.length() > 0) {
            out.add(w.toString());
        }
        return out;
    }

    private static String expand(String s, Map<String, String> vars) {
        return words(s.replace(" ", "\u0000"), vars).stream().map(x -> x.replace('\u0000', ' ')).reduce("", String::concat);
    }
}
