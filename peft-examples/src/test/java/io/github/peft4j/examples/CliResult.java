package io.github.peft4j.examples;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

/**
 * What one in-process run of the command line returned: its exit status and what it printed.
 *
 * @param status the exit status (0 success, 2 bad input)
 * @param out standard output
 * @param err standard error
 */
record CliResult(int status, String out, String err) {

    /**
     * Runs {@link Peft4jCli#run} with captured streams.
     *
     * @param args the command line
     * @return the result
     */
    static CliResult run(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = Peft4jCli.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        return new CliResult(status, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }
}
