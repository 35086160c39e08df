package io.github.peft4j.io;

import io.github.peft4j.PeftException;

/**
 * Checks names that become file or directory names, or parameters of a server request: adapter names (saved in
 * {@code <dir>/<name>/}, chosen per row by {@code row_adapters}). Such a name must not be able to leave the directory
 * it is resolved in or confuse the reader of a message.
 */
public final class SafeNames {
    /** The longest adapter name accepted. */
    public static final int MAX_LENGTH = 128;

    private SafeNames() {}

    /**
     * Checks an adapter name: non-empty, at most {@link #MAX_LENGTH} characters, no path separator ({@code /} or
     * {@code \}), no {@code .} (so no {@code ..} either, and no clash with module paths), no {@code :}, no control
     * character, no leading or trailing white space, and not {@code __base__} (the base model in row adapters).
     *
     * @param name the name
     * @return the name
     * @throws PeftException saying what is wrong with it
     */
    public static String adapterName(String name) {
        String problem = null;
        if (name == null || name.isEmpty()) {
            problem = "must not be empty";
        } else if (name.length() > MAX_LENGTH) {
            problem = "is " + name.length() + " characters long, at most " + MAX_LENGTH + " are allowed";
        } else if (name.equals("__base__")) {
            problem = "is reserved for the base model (row adapters name it for rows without an adapter)";
        } else if (!name.strip().equals(name)) {
            problem = "must not begin or end with white space";
        } else {
            for (int i = 0; i < name.length() && problem == null; i++) {
                char c = name.charAt(i);
                if (c == '/' || c == '\\') {
                    problem = "must not contain a path separator ('" + c + "')";
                } else if (c == '.') {
                    problem = "must not contain '.' (no '..', no module-path dots)";
                } else if (c == ':') {
                    problem = "must not contain ':'";
                } else if (Character.isISOControl(c) || Character.getType(c) == Character.FORMAT) {
                    problem = "must not contain control characters";
                }
            }
        }
        if (problem != null) {
            throw new PeftException("adapter name '" + (name == null ? "null" : name) + "' " + problem
                    + "; use letters, digits, '-' and '_'");
        }
        return name;
    }
}
