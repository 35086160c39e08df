package io.github.peft4j.examples;

/** A command-line usage error: printed as one line, exit code 2. */
final class CliException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    CliException(String message) {
        super(message);
    }
}
