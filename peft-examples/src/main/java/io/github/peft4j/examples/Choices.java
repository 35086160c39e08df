package io.github.peft4j.examples;

import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.train.LrSchedule;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * A closed set of names for an option: the converter that rejects other values with a message listing the
 * accepted ones, and the completion candidates (which {@code ${COMPLETION-CANDIDATES}} in a description and
 * the generated shell completion show).
 */
abstract class Choices implements ITypeConverter<String>, Iterable<String> {
    private final List<String> names;

    Choices(List<String> names) {
        this.names = List.copyOf(names);
    }

    Choices(String... names) {
        this(Arrays.asList(names));
    }

    @Override
    public String convert(String value) {
        if (names.contains(value)) {
            return value;
        }
        throw new TypeConversionException("'" + value + "': expected " + either(names));
    }

    @Override
    public Iterator<String> iterator() {
        return names.iterator();
    }

    /** @return {@code a or b}, {@code a, b or c} */
    static String either(List<String> names) {
        if (names.size() == 1) {
            return names.get(0);
        }
        return String.join(", ", names.subList(0, names.size() - 1)) + " or " + names.get(names.size() - 1);
    }

    /** {@code train --format}. */
    static final class Formats extends Choices {
        Formats() {
            super("pretokenized", "alpaca", "chat", "classification", "conll");
        }
    }

    /** {@code train --save-format}: the layout of the saved adapter directory. */
    static final class SaveFormats extends Choices {
        SaveFormats() {
            super("hf", "adapterhub");
        }
    }

    /** {@code train --task}. */
    static final class Tasks extends Choices {
        Tasks() {
            super("causal-lm", "seq-cls", "token-cls");
        }
    }

    /** {@code train --optimizer}. */
    static final class Optimizers extends Choices {
        Optimizers() {
            super("adamw", "sgd");
        }
    }

    /** {@code train --scheduler}: the names of {@link LrSchedule.Kind}. */
    static final class Schedulers extends Choices {
        Schedulers() {
            super(Arrays.stream(LrSchedule.Kind.values()).map(k -> k.name().toLowerCase(Locale.ROOT)).toList());
        }
    }

    /** {@code train --on-bad-line}. */
    static final class BadLines extends Choices {
        BadLines() {
            super("stop", "skip");
        }
    }

    /** {@code train --device}. */
    static final class Devices extends Choices {
        Devices() {
            super("cpu", "gpu");
        }
    }

    /** {@code completion SHELL}. */
    static final class Shells extends Choices {
        Shells() {
            super("bash", "zsh");
        }
    }

    /** {@code spam-job --methods}: {@link SpamJob#METHODS}. */
    static final class SpamMethods extends Choices {
        SpamMethods() {
            super(java.util.stream.Stream.concat(SpamJob.METHODS.stream(), java.util.stream.Stream.of(SpamJob.ALL)).toList());
        }
    }

    /** {@code bench --shape}: the shapes' ids and {@code all}. */
    static final class BenchShapes extends Choices {
        BenchShapes() {
            super(ids());
        }

        @Override
        public String convert(String value) {
            try {
                return super.convert(value);
            } catch (TypeConversionException e) {
                throw new Converters.Complete("unknown --shape '" + value + "'; expected one of "
                        + String.join(", ", ids()));
            }
        }

        private static List<String> ids() {
            List<String> ids = new ArrayList<>();
            for (BenchCommand.BenchShape s : BenchCommand.BenchShape.values()) {
                ids.add(s.id());
            }
            ids.add("all");
            return ids;
        }
    }

    /** {@code bench --config}. */
    static final class BenchConfigs extends Choices {
        BenchConfigs() {
            super(Arrays.stream(BenchCommand.BenchConfig.values()).map(BenchCommand.BenchConfig::id).toList());
        }
    }
}
