package io.github.peft4j.peft;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.regex.Pattern;

/**
 * A module selection as HF PEFT writes {@code target_modules} and {@code exclude_modules}: either a list of
 * names, each matching a module path exactly or as a dotted suffix ({@code q_proj} matches
 * {@code model.layers.0.self_attn.q_proj}), or one string that must match a whole path as a regular
 * expression; the string {@code all-linear} means every linear layer except the output head.
 */
public final class ModuleSpec {
    /** The {@code all-linear} shorthand. */
    public static final String ALL_LINEAR = "all-linear";
    private final List<String> names;
    private final Pattern regex;
    private final String regexText;

    private ModuleSpec(List<String> names, String regexText) {
        this.names = names == null ? null : List.copyOf(names);
        this.regexText = regexText;
        this.regex = regexText == null || ALL_LINEAR.equals(regexText) ? null : Pattern.compile(regexText);
    }

    /**
     * @param names module names or dotted suffixes
     * @return the selection
     */
    public static ModuleSpec names(String... names) {
        return new ModuleSpec(Arrays.asList(names), null);
    }

    /**
     * @param names module names or dotted suffixes
     * @return the selection
     */
    public static ModuleSpec names(List<String> names) {
        return new ModuleSpec(names, null);
    }

    /**
     * @param regex a regular expression that must match a whole module path, or {@code all-linear}
     * @return the selection
     */
    public static ModuleSpec regex(String regex) {
        return new ModuleSpec(null, regex);
    }

    /** @return the all-linear selection */
    public static ModuleSpec allLinear() {
        return regex(ALL_LINEAR);
    }

    /**
     * Jackson entry point: a string or an array of strings.
     *
     * @param node the JSON value
     * @return the selection, or null for JSON null
     */
    @JsonCreator
    public static ModuleSpec fromJson(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return regex(node.textValue());
        }
        if (node.isArray()) {
            List<String> out = new ArrayList<>();
            for (JsonNode n : node) {
                if (!n.isTextual()) {
                    throw new PeftException("module list entries must be strings, found " + n);
                }
                out.add(n.textValue());
            }
            return names(out);
        }
        throw new PeftException("a module selection must be a string or a list of strings, found " + node);
    }

    /** @return the JSON form: the regex string or the list */
    @JsonValue
    public Object toJson() {
        return names != null ? names : regexText;
    }

    /** @return true for {@code all-linear} */
    public boolean isAllLinear() {
        return ALL_LINEAR.equals(regexText);
    }

    /** @return the name list, or empty for a regex */
    public List<String> nameList() {
        return names == null ? Collections.emptyList() : names;
    }

    /** @return true if this is a single regex (or all-linear) */
    public boolean isRegex() {
        return names == null;
    }

    /**
     * Whether a module path is selected (all-linear is decided by the caller).
     *
     * @param path the module path
     * @return true if selected
     */
    public boolean matches(String path) {
        if (names != null) {
            for (String n : names) {
                if (matchesName(n, path)) {
                    return true;
                }
            }
            return false;
        }
        return regex != null && regex.matcher(path).matches();
    }

    /**
     * HF's list rule: exact name or dotted suffix.
     *
     * @param entry a list entry
     * @param path a module path
     * @return whether the entry selects the path
     */
    public static boolean matchesName(String entry, String path) {
        return path.equals(entry) || path.endsWith("." + entry);
    }

    @Override
    public String toString() {
        return String.valueOf(toJson());
    }
}
