package io.github.peft4j.examples;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** {@code --key value} and {@code --flag} options of one subcommand, with errors naming the option. */
final class Args {
    private final String command;
    private final Map<String, String> values = new HashMap<>();
    private final Set<String> flags = new HashSet<>();

    Args(String command, String[] argv, int from, Set<String> valueOptions, Set<String> flagOptions) {
        this.command = command;
        for (int i = from; i < argv.length; i++) {
            String a = argv[i];
            if (flagOptions.contains(a)) {
                flags.add(a);
            } else if (valueOptions.contains(a)) {
                if (i + 1 >= argv.length || argv[i + 1].startsWith("--")) {
                    throw new CliException(command + ": option " + a + " needs a value");
                }
                values.put(a, argv[++i]);
            } else {
                throw new CliException(command + ": unknown option '" + a + "'; options: " + String.join(" ",
                        new java.util.TreeSet<>(List.copyOf(union(valueOptions, flagOptions)))));
            }
        }
    }

    private static Set<String> union(Set<String> a, Set<String> b) {
        Set<String> u = new HashSet<>(a);
        u.addAll(b);
        return u;
    }

    String required(String key) {
        String v = values.get(key);
        if (v == null) {
            throw new CliException(command + ": missing required option " + key);
        }
        return v;
    }

    String optional(String key) {
        return values.get(key);
    }

    boolean flag(String key) {
        return flags.contains(key);
    }

    Path existingDir(String key) {
        Path p = Path.of(required(key));
        if (!Files.isDirectory(p)) {
            throw new CliException(command + ": " + key + " " + p + ": no such directory");
        }
        return p;
    }

    Path existingFile(String key) {
        Path p = Path.of(required(key));
        if (!Files.isRegularFile(p)) {
            throw new CliException(command + ": " + key + " " + p + ": no such file");
        }
        return p;
    }

    /**
     * @param key an option
     * @param def the value when the option is absent
     * @return the option as an integer
     */
    int integer(String key, int def) {
        String v = values.get(key);
        if (v == null) {
            return def;
        }
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new CliException(command + ": " + key + " expects an integer, got '" + v + "'");
        }
    }

    /**
     * @param key an option
     * @param def the value when the option is absent
     * @return the option as a number
     */
    double number(String key, double def) {
        String v = values.get(key);
        if (v == null) {
            return def;
        }
        try {
            return Double.parseDouble(v.trim());
        } catch (NumberFormatException e) {
            throw new CliException(command + ": " + key + " expects a number, got '" + v + "'");
        }
    }
}
