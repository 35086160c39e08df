package io.github.peft4j.examples;

import picocli.CommandLine.Option;

/** The {@code -h, --help} option of every command. */
final class HelpOption {
    @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help (options, defaults, examples) and exit.")
    boolean help;
}
