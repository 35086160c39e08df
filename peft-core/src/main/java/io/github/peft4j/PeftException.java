package io.github.peft4j;

/**
 * The one unchecked exception peft4j throws for bad input: a malformed file, a missing tensor, a config key
 * with the wrong value, a shape mismatch. The message always says what was expected, what was found and
 * where (file, tensor name or config key), and is one line: line breaks in it (a JSON parser's
 * {@code "\n at [Source: ...]"} location, text quoted from a hostile file) are folded into spaces, other control
 * characters are escaped, and a message longer than {@link #MAX_MESSAGE} characters is cut.
 */
public class PeftException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The longest message kept, in characters. */
    public static final int MAX_MESSAGE = 2000;

    /**
     * Creates an exception with a message.
     *
     * @param message what was expected, what was found, and where
     */
    public PeftException(String message) {
        super(oneLine(message));
    }

    /**
     * Creates an exception with a message and a cause.
     *
     * @param message what was expected, what was found, and where
     * @param cause the underlying error
     */
    public PeftException(String message, Throwable cause) {
        super(oneLine(message), cause);
    }

    /**
     * Folds a message into one printable line of at most {@link #MAX_MESSAGE} characters.
     *
     * @param message a message, or null
     * @return the line (null stays null)
     */
    public static String oneLine(String message) {
        if (message == null) {
            return null;
        }
        String m = message.replace("[Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); ", "[")
                .replaceAll("[ \\t]*[\\r\\n]+[ \\t]*", " ").strip();
        StringBuilder b = new StringBuilder(Math.min(m.length(), MAX_MESSAGE) + 32);
        for (int i = 0; i < m.length(); i++) {
            char c = m.charAt(i);
            if (c < 0x20 && c != '\t' || c == 0x7f) {
                b.append(String.format("\\x%02x", (int) c));
            } else {
                b.append(c);
            }
        }
        if (b.length() > MAX_MESSAGE) {
            int cut = b.length() - (MAX_MESSAGE - 40);
            b.setLength(MAX_MESSAGE - 40);
            b.append("... (").append(cut).append(" more characters)");
        }
        return b.toString();
    }
}
