package io.github.peft4j.examples;

import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * The typed option values of the command line, checked while the command line is parsed (before any work
 * starts). A converter's message is completed with the command and the option name by {@link Peft4jCli}, e.g.
 * {@code peft4j: bench: --steps must be an integer >= 1, got '0'}.
 */
final class Converters {
    private Converters() {}

    /** A conversion error whose message already names the option (printed after the command name only). */
    static final class Complete extends TypeConversionException {
        private static final long serialVersionUID = 1L;

        Complete(String message) {
            super(message);
        }
    }

    static int parseInt(String v) {
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new TypeConversionException("'" + v + "' is not an integer");
        }
    }

    static long parseLong(String v) {
        try {
            return Long.parseLong(v.trim());
        } catch (NumberFormatException e) {
            throw new TypeConversionException("'" + v + "' is not an integer");
        }
    }

    static double parseDouble(String v) {
        try {
            double d = Double.parseDouble(v.trim());
            if (Double.isFinite(d)) {
                return d;
            }
        } catch (NumberFormatException e) {
            // reported below
        }
        throw new TypeConversionException("'" + v + "' is not a number");
    }

    private static int atLeast(String v, int min) {
        int n = parseInt(v);
        if (n < min) {
            throw new TypeConversionException("must be an integer >= " + min + ", got '" + v + "'");
        }
        return n;
    }

    /** Any integer. */
    static final class Int implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String v) {
            return parseInt(v);
        }
    }

    /** Any long integer. */
    static final class Long64 implements ITypeConverter<Long> {
        @Override
        public Long convert(String v) {
            return parseLong(v);
        }
    }

    /** An integer >= 1. */
    static final class Positive implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String v) {
            return atLeast(v, 1);
        }
    }

    /** An integer >= 0. */
    static final class NonNegative implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String v) {
            return atLeast(v, 0);
        }
    }

    /** Any finite number. */
    static final class Num implements ITypeConverter<Double> {
        @Override
        public Double convert(String v) {
            return parseDouble(v);
        }
    }

    /** A number > 0. */
    static final class PositiveNum implements ITypeConverter<Double> {
        @Override
        public Double convert(String v) {
            double d = parseDouble(v);
            if (!(d > 0)) {
                throw new TypeConversionException("must be a number > 0, got '" + v + "'");
            }
            return d;
        }
    }

    /** A number >= 0. */
    static final class NonNegativeNum implements ITypeConverter<Double> {
        @Override
        public Double convert(String v) {
            double d = parseDouble(v);
            if (d < 0) {
                throw new TypeConversionException("must be a number >= 0, got '" + v + "'");
            }
            return d;
        }
    }

    /** A probability of dropping: 0 <= p < 1. */
    static final class DropProbability implements ITypeConverter<Double> {
        @Override
        public Double convert(String v) {
            double d = parseDouble(v);
            if (d < 0 || d >= 1) {
                throw new TypeConversionException("must be a number in [0, 1), got '" + v + "'");
            }
            return d;
        }
    }

    /** A nucleus mass: 0 < p <= 1. */
    static final class TopP implements ITypeConverter<Double> {
        @Override
        public Double convert(String v) {
            double d = parseDouble(v);
            if (!(d > 0 && d <= 1)) {
                throw new TypeConversionException("must be a number in (0, 1], got '" + v + "'");
            }
            return d;
        }
    }

    static Path path(String v) {
        try {
            return Path.of(v);
        } catch (InvalidPathException e) {
            throw new TypeConversionException("'" + v + "' is not a valid path: " + e.getReason());
        }
    }

    /** A path that passes a check, else the message {@code "<path>: no such <what>"}. */
    private static Path existing(String v, java.util.function.Predicate<Path> check, String what) {
        Path p = path(v);
        if (!check.test(p)) {
            throw new TypeConversionException(p + ": no such " + what);
        }
        return p;
    }

    /** A directory that exists. */
    static final class ExistingDir implements ITypeConverter<Path> {
        @Override
        public Path convert(String v) {
            return existing(v, Files::isDirectory, "directory");
        }
    }

    /** A regular file that exists. */
    static final class ExistingFile implements ITypeConverter<Path> {
        @Override
        public Path convert(String v) {
            return existing(v, Files::isRegularFile, "file");
        }
    }

    /** A file or directory that exists. */
    static final class ExistingPath implements ITypeConverter<Path> {
        @Override
        public Path convert(String v) {
            return existing(v, Files::exists, "file or directory");
        }
    }
}
