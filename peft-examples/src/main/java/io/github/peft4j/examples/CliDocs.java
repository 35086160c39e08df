package io.github.peft4j.examples;

import io.github.peft4j.io.AtomicFiles;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Help;

/**
 * Renders {@code docs/cli.md} from the command definitions: the usage help of {@code peft4j} and of every command
 * (descriptions, options with types and defaults, examples), the same text {@code --help} prints. A test compares
 * the committed page with this rendering, and another runs its cheap examples.
 *
 * <pre>
 * java -cp "peft-examples/target/classes:peft-examples/target/lib/*" io.github.peft4j.examples.CliDocs docs/cli.md
 * </pre>
 */
public final class CliDocs {
    /** The command that regenerates the page (after {@code mvn -B -ntp -q package -DskipTests}). */
    public static final String REGENERATE = "java -cp \"peft-examples/target/classes:peft-examples/target/lib/*\" "
            + "io.github.peft4j.examples.CliDocs docs/cli.md";

    private static final String INTRO = String.join("\n",
            "# The `peft4j` command line",
            "",
            "<!-- Generated from the command definitions (peft-examples, io.github.peft4j.examples.*Command) by CliDocs;",
            "     do not edit by hand. Regenerate: " + REGENERATE + " -->",
            "",
            "Build once with `mvn -B -ntp -q package -DskipTests`; then `./peft4j` runs from the repository root (it",
            "uses `java` from the `PATH`, or `$JAVA`; extra JVM options in `$PEFT4J_JAVA_OPTS`; log level in",
            "`$PEFT4J_LOG`, default `warn`). Every command is a thin layer over the public Java API, named in its",
            "description. This page is the `--help` text of each command, as `./peft4j COMMAND --help` prints it.",
            "",
            "Errors: bad usage or bad input exits with status 2 and one line on stderr naming the option, file or key",
            "(`peft4j: logits: --input x.json: no such file`); nothing is written. An unknown option names the closest",
            "known one. An unexpected failure (a libtorch error included) exits with status 1 and one line with its",
            "cause and a hint; `--verbose` (or `PEFT4J_LOG=debug`) adds the stack trace. Shell completion:",
            "`source <(./peft4j completion bash)`.",
            "",
            "The examples use the tiny test fixtures under `peft-core/src/test/resources/fixtures`; those of `logits`,",
            "`info`, `generate`, `merge` and `train` are run by `CliDocsTest`, which also checks the output shown.",
            "");

    private CliDocs() {}

    /**
     * Writes the page.
     *
     * @param args the output file (default {@code docs/cli.md})
     */
    public static void main(String[] args) {
        Path file = Path.of(args.length > 0 ? args[0] : "docs/cli.md");
        AtomicFiles.writeString(file, render());
        System.out.println("wrote " + file);
    }

    /** @return the page's markdown */
    public static String render() {
        PrintStream none = new PrintStream(OutputStream.nullOutputStream());
        CommandLine cl = Peft4jCli.commandLine(none, none, List.of());
        StringBuilder sb = new StringBuilder(INTRO);
        section(sb, "peft4j", cl);
        for (Map.Entry<String, CommandLine> e : cl.getSubcommands().entrySet()) {
            if (!e.getKey().equals("help")) {
                section(sb, "peft4j " + e.getKey(), e.getValue());
            }
        }
        return sb.toString();
    }

    private static void section(StringBuilder sb, String title, CommandLine cl) {
        String usage = cl.getUsageMessage(Help.Ansi.OFF).replaceAll("[ \\t]+\\n", "\n").strip();
        sb.append("\n## `").append(title).append("`\n\n```text\n").append(usage).append("\n```\n");
    }
}
