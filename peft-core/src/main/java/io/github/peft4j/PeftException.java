package io.github.peft4j;

/**
 * The one unchecked exception peft4j throws for bad input: a malformed file, a missing tensor, a config key
 * with the wrong value, a shape mismatch. The message always says what was expected, what was found and
 * where (file, tensor name or config key).
 */
public class PeftException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * Creates an exception with a message.
     *
     * @param message what was expected, what was found, and where
     */
    public PeftException(String message) {
        super(message);
    }

    /**
     * Creates an exception with a message and a cause.
     *
     * @param message what was expected, what was found, and where
     * @param cause the underlying error
     */
    public PeftException(String message, Throwable cause) {
        super(message, cause);
    }
}
