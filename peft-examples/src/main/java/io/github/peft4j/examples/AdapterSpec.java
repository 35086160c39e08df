package io.github.peft4j.examples;

import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * One {@code --adapter [NAME=]DIR} value: an adapter directory and the name it is loaded under
 * ({@link PeftModel#DEFAULT} when no name is given).
 *
 * @param name the adapter name
 * @param dir the adapter directory (exists)
 */
record AdapterSpec(String name, Path dir) {
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9_.-]+");

    /** Parses {@code DIR} or {@code NAME=DIR}; a whole value that is a directory is always a bare {@code DIR}. */
    static final class Converter implements ITypeConverter<AdapterSpec> {
        @Override
        public AdapterSpec convert(String v) {
            int eq = v.indexOf('=');
            if (eq > 0 && !Files.isDirectory(Converters.path(v))) {
                String name = v.substring(0, eq);
                if (!NAME.matcher(name).matches() || name.equals(CallContext.BASE)) {
                    throw new TypeConversionException("'" + v + "': adapter name '" + name + "' must be letters, digits, "
                            + "'_', '.' or '-' (and not " + CallContext.BASE + ")");
                }
                return new AdapterSpec(name, new Converters.ExistingDir().convert(v.substring(eq + 1)));
            }
            return new AdapterSpec(PeftModel.DEFAULT, new Converters.ExistingDir().convert(v));
        }
    }

    /**
     * Checks that no name is given twice.
     *
     * @param command the command name, for the message
     * @param specs the {@code --adapter} values
     * @return the names in order
     */
    static List<String> names(String command, List<AdapterSpec> specs) {
        Set<String> names = new LinkedHashSet<>();
        for (AdapterSpec s : specs) {
            if (!names.add(s.name())) {
                throw new CliException(command + ": --adapter: the name '" + s.name() + "' is given twice"
                        + (s.name().equals(PeftModel.DEFAULT) ? " (a bare DIR is named " + PeftModel.DEFAULT
                                + "; give the others as NAME=DIR)" : ""));
            }
        }
        return new ArrayList<>(names);
    }

    /**
     * Checks {@code --row-adapters} against the {@code --adapter} names: each is a loaded adapter or
     * {@link CallContext#BASE}.
     *
     * @param command the command name, for the message
     * @param rows the row adapter names (null: none given)
     * @param specs the {@code --adapter} values
     */
    static void checkRows(String command, List<String> rows, List<AdapterSpec> specs) {
        if (rows == null) {
            return;
        }
        List<String> known = names(command, specs);
        for (String r : rows) {
            if (!r.equals(CallContext.BASE) && !known.contains(r)) {
                throw new CliException(command + ": --row-adapters: '" + r + "' is not a loaded adapter; expected one of "
                        + known + " or " + CallContext.BASE);
            }
        }
    }

    /**
     * Checks that there is one row adapter per input row.
     *
     * @param command the command, for messages
     * @param rows the {@code --row-adapters} names, or null
     * @param in the input file's contents
     * @param file the input file, for messages
     */
    static void checkRowCount(String command, List<String> rows, InputFile in, Path file) {
        if (rows != null && rows.size() != in.inputIds.length) {
            throw new CliException(command + ": --row-adapters gives " + rows.size() + " names, " + file + " has "
                    + in.inputIds.length + " rows");
        }
    }

    /**
     * Loads a base model for these adapters: the head the first adapter's {@code task_type} names, its weights
     * from the adapter where the checkpoint has none ({@link io.github.peft4j.peft.AutoPeftModel#loadBase}).
     *
     * @param model the model directory
     * @param specs the adapters (may be empty)
     * @return the base model, fp32 on the CPU
     */
    static TransformerModel loadBase(Path model, List<AdapterSpec> specs) {
        return loadBase(model, specs, null);
    }

    /**
     * Loads the base model as {@link #loadBase(Path, List)}, quantised to 4 bits while loading.
     *
     * @param model the model directory
     * @param specs the adapters (the first one's task_type picks the head), or null / empty
     * @param quantization {@code --quantize}, or null to load the checkpoint as it is
     * @return the model
     */
    static TransformerModel loadBase(Path model, List<AdapterSpec> specs, io.github.peft4j.model.Quantization quantization) {
        return io.github.peft4j.peft.AutoPeftModel.loadBase(model, specs == null || specs.isEmpty() ? null : specs.get(0).dir(),
                ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32, quantization);
    }

    /**
     * Wraps a model and loads the adapters for inference (frozen), all active together, with the public API
     * ({@link PeftModel#loadAdapter}, {@link PeftModel#setActive}).
     *
     * @param model the base model
     * @param specs the adapters (may be empty)
     * @return the wrapped model
     */
    static PeftModel open(TransformerModel model, List<AdapterSpec> specs) {
        PeftModel peft = PeftModel.wrap(model);
        for (AdapterSpec s : specs) {
            peft.loadAdapter(s.dir(), s.name(), false);
        }
        if (specs.size() > 1) {
            peft.setActive(specs.stream().map(AdapterSpec::name).toArray(String[]::new));
        }
        return peft;
    }
}
