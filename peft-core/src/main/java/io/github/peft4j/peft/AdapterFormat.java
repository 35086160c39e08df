package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.model.TransformerModel;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;

/**
 * An adapter directory layout other than HF PEFT's ({@code adapter_config.json} with a {@code peft_type} +
 * {@code adapter_model.safetensors}) that {@link PeftModel#loadAdapter} also reads, e.g. AdapterHub's
 * {@code save_adapter} directories. Found with {@link ServiceLoader} ({@code META-INF/services/
 * io.github.peft4j.peft.AdapterFormat}); a method module that reads another library's files registers one.
 */
public interface AdapterFormat {
    /**
     * @param dir an adapter directory
     * @return whether its files are in this format (only then are the other methods called)
     */
    boolean recognises(Path dir);

    /**
     * Reads the config to attach the adapter with.
     *
     * @param dir the directory
     * @param model the model it is loaded into (for checks such as the hidden size)
     * @return the config (its {@code peft_type} names a registered method)
     */
    PeftConfig readConfig(Path dir, TransformerModel model);

    /**
     * Reads the tensors, keyed as the attached adapter's {@link Adapter#stateDict} plus, where the files hold them,
     * the {@code modules_to_save} copies as HF PEFT keys them ({@code base_model.model.classifier.weight}). When no
     * copy key is returned, the copies keep the base model's values.
     *
     * @param dir the directory
     * @param adapter the adapter just attached from {@link #readConfig}'s config
     * @param manager where to create the arrays
     * @return key to array
     */
    Map<String, NDArray> readTensors(Path dir, Adapter adapter, NDManager manager);

    /**
     * What an adapter directory says about the head of the model it was saved from.
     *
     * @param task the task (a classification head, for {@link AutoPeftModel} to load the base with)
     * @param labels the classifier's label count, or 0 when the files do not say
     */
    record Head(io.github.peft4j.model.TaskType task, int labels) {}

    /**
     * @param dir a directory this format recognises
     * @return the classification head of the model the adapter was saved from (AdapterHub's {@code model_class}
     *     and {@code head_config.json}), or null where the files name none: the base then loads as its config says
     */
    default Head head(Path dir) {
        return null;
    }

    /**
     * @param dir an adapter directory
     * @return the first registered format that recognises it, or null (HF PEFT's layout)
     */
    static AdapterFormat find(Path dir) {
        for (AdapterFormat f : Registered.FORMATS) {
            if (f.recognises(dir)) {
                return f;
            }
        }
        return null;
    }

    /** The formats on the classpath. */
    final class Registered {
        static final List<AdapterFormat> FORMATS = ServiceLoader.load(AdapterFormat.class, AdapterFormat.class.getClassLoader())
                .stream().map(ServiceLoader.Provider::get).toList();

        private Registered() {}
    }
}
