package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

/** {@code --help} of every command, {@code --version}, and the generated shell completion. */
class CliHelpTest {
    private static Map<String, CommandLine> commands() {
        PrintStream none = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        return Peft4jCli.commandLine(none, none, List.of()).getSubcommands();
    }

    @Test
    void everyCommandsHelpDescribesAllItsOptionsAndShowsExamples() {
        int options = 0;
        for (Map.Entry<String, CommandLine> e : commands().entrySet()) {
            if (e.getKey().equals("help")) {
                continue;
            }
            CliResult r = CliResult.run(e.getKey(), "--help");
            assertEquals(0, r.status(), e.getKey() + ": " + r.err());
            assertEquals("", r.err(), e.getKey());
            assertTrue(r.out().startsWith("Usage: peft4j " + e.getKey()), r.out());
            assertTrue(r.out().contains("\nExamples:\n  $ "), e.getKey() + " shows no examples:\n" + r.out());
            for (OptionSpec o : e.getValue().getCommandSpec().options()) {
                String[] d = o.description();
                assertTrue(d.length > 0 && !d[0].isBlank(), e.getKey() + " " + o.longestName() + " has no description");
                // the option with its value label, then the (wrapped) start of its description
                String shown = o.longestName() + (o.arity().max() == 0 ? "" : " " + o.paramLabel());
                assertTrue(r.out().contains(shown), e.getKey() + " --help does not list " + shown + ":\n" + r.out());
                String start = d[0].split("\\$\\{")[0];
                start = start.substring(0, Math.min(start.length(), 20));
                assertTrue(r.out().replaceAll("\\s+", " ").contains(start.replaceAll("\\s+", " ")),
                        e.getKey() + " " + o.longestName() + ": description '" + start + "' missing");
                options++;
            }
            assertEquals(r.out(), CliResult.run("help", e.getKey()).out(), "help " + e.getKey());
        }
        // the train command alone had 41 options before picocli; each command also has --help and --verbose
        assertTrue(options > 100, "options checked: " + options);
        CliResult train = CliResult.run("train", "--help");
        assertTrue(train.out().contains("--optimizer OPTIMIZER  adamw, sgd (default: adamw)."), train.out());
        assertTrue(train.out().contains("--batch-size B         Examples per micro-batch (integer >= 1; default: 8)."),
                train.out());
    }

    @Test
    void topLevelHelpListsEveryCommandAndNoArgumentsIsUsage() {
        CliResult r = CliResult.run("--help");
        assertEquals(0, r.status());
        for (String c : commands().keySet()) {
            assertTrue(r.out().contains("\n  " + c + " "), c + " not listed:\n" + r.out());
        }
        assertTrue(r.out().contains("2   bad usage or bad input"), r.out());
        CliResult none = CliResult.run();
        assertEquals(2, none.status());
        assertEquals(r.out(), none.err());
    }

    @Test
    void versionNamesTheBuild() {
        CliResult r = CliResult.run("--version");
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().matches("(?s)peft4j +\\d+\\.\\d+\\.\\d+(-SNAPSHOT)?\nDJL +0\\.36\\.0 .*\nlibtorch +2\\.7\\.1 cpu at .*"
                + "\nJava +\\d+.*"), r.out());
    }

    /** Runs the bash completion function for a partial command line and returns what it offers. */
    private static List<String> complete(Path script, String... words) throws Exception {
        String line = String.join(" ", words);
        StringBuilder arr = new StringBuilder();
        for (String w : words) {
            arr.append(" '").append(w).append('\'');
        }
        String prog = "source " + script + " 2>/dev/null; COMP_WORDS=(" + arr + "); COMP_CWORD=" + (words.length - 1)
                + "; COMP_LINE='" + line + "'; COMP_POINT=" + line.length() + "; _complete_peft4j 2>/dev/null;"
                + " printf '%s\\n' \"${COMPREPLY[@]}\"";
        Process p = new ProcessBuilder("bash", "-c", prog).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.waitFor(), out);
        List<String> got = new ArrayList<>(out.lines().filter(s -> !s.isBlank()).map(String::strip).toList());
        got.sort(null);
        return got;
    }

    @Test
    void completionScriptCompletesCommandsOptionsAndChoices(@TempDir Path tmp) throws Exception {
        CliResult r = CliResult.run("completion", "bash");
        assertEquals(0, r.status(), r.err());
        Path script = tmp.resolve("peft4j-completion.bash");
        Files.writeString(script, r.out());
        assertEquals(List.of("train"), complete(script, "./peft4j", "tr"));
        assertEquals(List.of("adamw", "sgd"), complete(script, "./peft4j", "train", "--optimizer", ""));
        assertEquals(List.of("cpu", "gpu"), complete(script, "./peft4j", "train", "--device", ""));
        assertEquals(List.of("--max-length", "--max-steps"), complete(script, "./peft4j", "train", "--max-"));
        assertEquals(List.of("--max-new-tokens"), complete(script, "./peft4j", "generate", "--max-"));
        assertTrue(complete(script, "./peft4j", "train", "--method", "").contains("prompt-tuning"));
        CliResult zsh = CliResult.run("completion", "zsh");
        assertEquals(0, zsh.status());
        assertTrue(zsh.out().startsWith("autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"));
        assertTrue(zsh.out().endsWith(r.out()));
        assertFalse(r.out().contains("compinit && compinit\nautoload"), "bash gets no zsh preamble");
    }
}
