package io.github.peft4j.examples;

import io.github.peft4j.PeftException;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Help;
import picocli.CommandLine.IVersionProvider;
import picocli.CommandLine.MissingParameterException;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Model.PositionalParamSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * The {@code peft4j} command line: a picocli command whose subcommands are thin layers over the public Java API
 * ({@code PeftModel}, {@code PeftTrainer}, {@code Generator}, ...).
 *
 * <p>Exit status: 0 success, 2 bad usage or bad input (one line on stderr naming the option, file or key), 1 an
 * internal error (one line with its cause and a hint; the stack trace only with {@code --verbose} or
 * {@code PEFT4J_LOG=debug}). {@code docs/cli.md} is generated from these definitions by {@link CliDocs}.
 */
@Command(name = "peft4j", mixinStandardHelpOptions = true, versionProvider = Peft4jCli.Version.class,
        sortOptions = false, separator = " ",
        description = {"Parameter-efficient fine-tuning of transformer models (LoRA, IA3, prompt tuning, ...) on DJL's"
                + " PyTorch engine: train adapters, run and merge them, in the Hugging Face PEFT formats.",
            "",
            "Every command has its own help: peft4j COMMAND --help (or peft4j help COMMAND). Options take their"
                + " value as --name VALUE or --name=VALUE."},
        exitCodeListHeading = "%nExit status:%n",
        exitCodeList = {"0:success", "2:bad usage or bad input (one line on stderr naming the option, file or key)",
            "1:an internal error (one line with its cause; the stack trace with --verbose)"},
        footerHeading = "%nEnvironment (read by the ./peft4j launcher):%n",
        footer = {"  JAVA               the java executable (default: java on the PATH)",
            "  PEFT4J_JAVA_OPTS   extra JVM options, e.g. -Xmx8g",
            "  PEFT4J_LOG         log level: error, warn (default), info, debug; debug also prints stack traces",
            "",
            "Shell completion: source <(./peft4j completion bash)   (zsh: source <(./peft4j completion zsh))"})
public final class Peft4jCli implements Callable<Integer> {
    /** Help width of every command, also in docs/cli.md. */
    static final int WIDTH = 100;

    @Option(names = "--verbose", scope = ScopeType.INHERIT,
            description = "On an error, print the stack trace too (as PEFT4J_LOG=debug does).")
    boolean verbose;

    @Spec
    CommandSpec spec;

    /** Where commands print their results. */
    final PrintStream out;
    /** Where errors go. */
    final PrintStream err;
    /** The command line as given (spam-job records it in its report). */
    final List<String> argv;

    private Peft4jCli(PrintStream out, PrintStream err, List<String> argv) {
        this.out = out;
        this.err = err;
        this.argv = argv;
    }

    /**
     * Entry point of the {@code peft4j} launcher.
     *
     * @param args the command line
     */
    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /**
     * Runs a command line in this process.
     *
     * @param args the command line
     * @return the exit status: 0 success, 2 bad usage or bad input, 1 an internal error
     */
    public static int run(String... args) {
        return run(args, System.out, System.err);
    }

    /**
     * Runs a command line in this process.
     *
     * @param args the command line
     * @param out standard output
     * @param err standard error
     * @return the exit status: 0 success, 2 bad usage or bad input, 1 an internal error
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        CommandLine cl = commandLine(out, err, List.of(args));
        return execute(cl, args);
    }

    /** Executes a command line built by {@link #commandLine}; any throwable becomes exit status 1. */
    static int execute(CommandLine cl, String[] args) {
        Peft4jCli root = cl.getCommand();
        try {
            return cl.execute(splitEquals(cl, args));
        } catch (RuntimeException | Error e) { // an Error (out of memory, a missing native library) or a bug in a handler
            return root.internalError(e, cl);
        } finally {
            cl.getOut().flush();
            cl.getErr().flush();
            root.out.flush();
        }
    }

    @Override
    public Integer call() {
        err.print(spec.commandLine().getUsageMessage(Help.Ansi.OFF));
        err.flush();
        return 2;
    }

    /**
     * The whole command tree with its error handling, printing to the given streams (help and completion
     * scripts to {@code out}).
     *
     * @param out standard output
     * @param err standard error
     * @param argv the command line as given
     * @return the command line
     */
    static CommandLine commandLine(PrintStream out, PrintStream err, List<String> argv) {
        Peft4jCli root = new Peft4jCli(out, err, argv);
        CommandLine cl = new CommandLine(root);
        for (Object c : new Object[] {new TrainCommand(), new LogitsCommand(), new GenerateCommand(), new ServeCommand(), new MergeCommand(),
            new QuantizeCommand(), new InfoCommand(), new BenchCommand(), new ImportOnnxCommand(), new ImportLlama2cCommand(),
            new PrepareSpamCommand(), new SpamJobCommand(), new PosJobCommand(), new SftJobCommand(), new CombineCommand(),
            new LoraHubCommand(), new LoraHubDemoCommand(), new CompletionCommand(), new CommandLine.HelpCommand()}) {
            cl.addSubcommand(c);
        }
        cl.registerConverter(Integer.class, new Converters.Int());
        cl.registerConverter(Integer.TYPE, new Converters.Int());
        cl.registerConverter(Long.class, new Converters.Long64());
        cl.registerConverter(Long.TYPE, new Converters.Long64());
        cl.registerConverter(Double.class, new Converters.Num());
        cl.registerConverter(Double.TYPE, new Converters.Num());
        cl.setUsageHelpWidth(WIDTH);
        cl.setColorScheme(Help.defaultColorScheme(Help.Ansi.OFF));
        cl.setOut(new PrintWriter(new OutputStreamWriter(out, StandardCharsets.UTF_8), true));
        cl.setErr(new PrintWriter(new OutputStreamWriter(err, StandardCharsets.UTF_8), true));
        cl.setParameterExceptionHandler((ex, args) -> root.badUsage(ex));
        cl.setExecutionExceptionHandler((ex, c, parsed) -> root.failed(ex, c));
        cl.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_COMMAND_LIST, help -> commandList(cl));
        for (CommandLine sub : cl.getSubcommands().values()) {
            sub.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_FOOTER, help -> verbatimFooter(sub));
            sub.getHelpSectionMap().put(CommandLine.Model.UsageMessageSpec.SECTION_KEY_SYNOPSIS,
                    help -> "peft4j " + shortSynopsis(sub.getCommandSpec()) + "\n");
        }
        return cl;
    }

    /**
     * Splits {@code --name=value} into {@code --name value} for the options of the command tree: the commands
     * use a space as separator (their help shows {@code --name VALUE}), and both spellings stay accepted.
     */
    private static String[] splitEquals(CommandLine cl, String[] args) {
        Set<String> names = new HashSet<>();
        collectOptionNames(cl, names);
        List<String> out = new ArrayList<>();
        boolean rest = false;
        for (String a : args) {
            int eq = a.indexOf('=');
            if (!rest && a.startsWith("--") && eq > 2 && names.contains(a.substring(0, eq))) {
                out.add(a.substring(0, eq));
                out.add(a.substring(eq + 1));
            } else {
                rest |= a.equals("--");
                out.add(a);
            }
        }
        return out.toArray(String[]::new);
    }

    private static void collectOptionNames(CommandLine cl, Set<String> names) {
        for (OptionSpec o : cl.getCommandSpec().options()) {
            if (o.arity().max() > 0) {
                names.addAll(List.of(o.names()));
            }
        }
        cl.getSubcommands().values().forEach(s -> collectOptionNames(s, names));
    }

    /** A parse error: one line, exit status 2. */
    private int badUsage(ParameterException ex) {
        CommandLine cl = ex.getCommandLine();
        if (ex instanceof MissingParameterException && !cl.getUnmatchedArguments().isEmpty()) {
            // picocli checks the required options first; an unknown option is the better message
            ex = new UnmatchedArgumentException(cl, new java.util.ArrayList<>(cl.getUnmatchedArguments()));
        }
        boolean isRoot = cl.getCommandSpec().parent() == null;
        String prefix = isRoot ? "" : cl.getCommandName() + ": ";
        String see = " (see: peft4j " + (isRoot ? "" : cl.getCommandName() + " ") + "--help)";
        String msg;
        if (ex instanceof UnmatchedArgumentException u && !u.getUnmatched().isEmpty()) {
            String first = u.getUnmatched().get(0);
            List<String> suggestions = u.getSuggestions();
            String closest = suggestions.isEmpty() ? "" : "; did you mean " + suggestions.get(0) + "?";
            if (isRoot && !first.startsWith("-")) {
                msg = "unknown command '" + first + "'" + closest + "; commands: "
                        + String.join(", ", visibleCommands(cl).keySet());
            } else if (first.startsWith("-")) {
                msg = prefix + "unknown option '" + first + "'" + closest + see;
            } else {
                msg = prefix + "unexpected argument '" + first + "'" + see;
            }
        } else if (ex instanceof MissingParameterException m && !m.getMissing().isEmpty()) {
            List<String> names = m.getMissing().stream().map(Peft4jCli::name).toList();
            if (ex.getMessage().startsWith("Missing required parameter for option")
                    || ex.getMessage().startsWith("Expected parameter for option")) {
                msg = prefix + "option " + names.get(0) + " needs a value" + see;
            } else {
                msg = prefix + "missing required option" + (names.size() > 1 ? "s " : " ") + String.join(", ", names) + see;
            }
        } else if (ex.getCause() instanceof Converters.Complete c) {
            msg = prefix + c.getMessage();
        } else if (ex.getCause() instanceof TypeConversionException t && ex.getArgSpec() != null) {
            msg = prefix + name(ex.getArgSpec()) + " " + t.getMessage();
        } else {
            msg = prefix + ex.getMessage();
        }
        err.println("peft4j: " + oneLine(msg));
        if (verbose()) {
            ex.printStackTrace(err);
        }
        err.flush();
        return 2;
    }

    private static String name(ArgSpec a) {
        if (a instanceof OptionSpec o) {
            return o.longestName();
        }
        return ((PositionalParamSpec) a).paramLabel();
    }

    /** An exception from a command: bad input (exit 2) or an internal error (exit 1), one line either way. */
    private int failed(Exception ex, CommandLine cl) {
        if (ex instanceof CliException || ex instanceof PeftException || ex instanceof UncheckedIOException) {
            err.println("peft4j: " + oneLine(ex.getMessage()));
            if (verbose()) {
                ex.printStackTrace(err);
            }
            err.flush();
            return 2;
        }
        return internalError(ex, cl);
    }

    private int internalError(Throwable ex, CommandLine cl) {
        CommandLine sub = cl;
        for (CommandLine.ParseResult p = cl.getParseResult(); p != null; p = p.subcommand()) {
            sub = p.commandSpec().commandLine();
        }
        String where = sub.getCommandSpec().parent() == null ? "" : " in " + sub.getCommandName();
        StringBuilder line = new StringBuilder("peft4j: internal error" + where + ": " + describe(ex));
        Throwable cause = ex.getCause();
        if (cause != null && cause != ex && ex.getMessage() != null && !ex.getMessage().contains(describe(cause))) {
            line.append(" (caused by ").append(describe(cause)).append(')');
        }
        line.append(hint(ex)).append(verbose() ? "" : "; rerun with --verbose for the stack trace");
        err.println(line);
        if (verbose()) {
            ex.printStackTrace(err);
        }
        err.flush();
        return 1;
    }

    private static String describe(Throwable t) {
        String m = t.getMessage();
        return t.getClass().getSimpleName() + (m == null || m.isBlank() ? "" : ": " + firstLine(m));
    }

    private static String hint(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (c instanceof ai.djl.engine.EngineException) {
                return ". libtorch rejected an operation; this usually means an input the model cannot take (a shape,"
                        + " an index past a table, a dtype) that peft4j did not check first";
            }
            if (c instanceof OutOfMemoryError) {
                return ". Java ran out of heap memory; give it more with PEFT4J_JAVA_OPTS=-Xmx8g";
            }
            if (c instanceof UnsatisfiedLinkError) {
                return ". A native library did not load (is the libtorch of pytorch-native-cpu in target/lib?)";
            }
        }
        return ". This is a bug in peft4j or a case it does not handle; please report it with the --verbose output";
    }

    private boolean verbose() {
        String log = System.getenv("PEFT4J_LOG");
        // argv too: a parse error can stop before picocli reaches --verbose
        return verbose || argv.contains("--verbose") || (log != null && log.trim().toLowerCase(Locale.ROOT).matches("debug|trace"));
    }

    private static String firstLine(String s) {
        String t = s.strip();
        int nl = t.indexOf('\n');
        return nl < 0 ? t : t.substring(0, nl).strip();
    }

    private static String oneLine(String s) {
        return s == null ? "(no message)" : s.strip().replaceAll("\\s*\\R\\s*", "; ");
    }

    private static Map<String, CommandLine> visibleCommands(CommandLine cl) {
        return cl.getSubcommands().entrySet().stream().filter(e -> !e.getValue().getCommandSpec().usageMessage().hidden())
                .collect(Collectors.toMap(Map.Entry::getKey, Map.Entry::getValue, (a, b) -> a, java.util.LinkedHashMap::new));
    }

    /** The command list of {@code peft4j --help}: each command's synopsis and the first line of its description. */
    private static String commandList(CommandLine cl) {
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<String, CommandLine> e : visibleCommands(cl).entrySet()) {
            CommandSpec s = e.getValue().getCommandSpec();
            sb.append("  ").append(shortSynopsis(s)).append('\n');
            String[] d = s.usageMessage().header().length > 0 ? s.usageMessage().header() : s.usageMessage().description();
            if (d.length > 0) {
                sb.append("      ").append(d[0]).append('\n');
            }
        }
        return sb.toString();
    }

    /**
     * {@code name --req VALUE [--opt VALUE] [--flag]}, every option in declaration order when that fits one
     * line, else the required ones and {@code [OPTIONS]}.
     */
    static String shortSynopsis(CommandSpec s) {
        List<String> all = new ArrayList<>();
        List<String> required = new ArrayList<>();
        for (OptionSpec o : s.options()) {
            if (o.usageHelp() || o.versionHelp() || o.hidden() || o.inherited()) {
                continue;
            }
            String label = o.paramLabel() + (o.splitRegex().isEmpty() ? "" : "[," + o.paramLabel() + "...]");
            String one = o.longestName() + (o.arity().max() == 0 ? "" : " " + label);
            if (o.required()) {
                all.add(one);
                required.add(one);
            } else {
                all.add("[" + one + "]" + (o.isMultiValue() ? "..." : ""));
            }
        }
        for (PositionalParamSpec p : s.positionalParameters()) {
            if (!p.hidden() && p.arity().min() > 0) {
                all.add(p.paramLabel());
                required.add(p.paramLabel());
            } else if (!p.hidden()) {
                all.add("[" + p.paramLabel() + "]");
            }
        }
        String full = s.name() + (all.isEmpty() ? "" : " " + String.join(" ", all));
        if (full.length() <= WIDTH - 16) {
            return full;
        }
        return s.name() + (required.isEmpty() ? "" : " " + String.join(" ", required)) + " [OPTIONS]";
    }

    /** Footers (the examples) are printed as written, not re-wrapped. */
    private static String verbatimFooter(CommandLine cl) {
        String[] f = cl.getCommandSpec().usageMessage().footer();
        if (f.length == 0) {
            return "";
        }
        return "\n" + String.join("\n", f).replace("%n", "\n") + "\n";
    }

    /**
     * {@code peft4j --version}: peft4j's and DJL's versions, and the libtorch in use (version, flavour, library path,
     * where it came from, fused ops, BF16) as {@link io.github.peft4j.Peft4j#engineInfo()} reports it at run time.
     */
    static final class Version implements IVersionProvider {
        @Override
        public String[] getVersion() {
            String[] engine = io.github.peft4j.Peft4j.engineInfo().toString().split("\n");
            String[] out = java.util.Arrays.copyOf(engine, engine.length + 1);
            out[engine.length] = "Java     " + System.getProperty("java.version");
            return out;
        }
    }
}
