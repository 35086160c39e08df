package io.github.peft4j.adapters.bottleneck;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Path;

/**
 * AdapterHub interchange for bottleneck adapters and union adapters (UniPELT, MAM): load a directory written by
 * AdapterHub's {@code save_adapter} (safetensors or its default {@code pytorch_adapter.bin}), and write one that
 * AdapterHub's {@code load_adapter(dir, use_safetensors=True)} reads. ({@link PeftModel#loadAdapter} also reads AdapterHub
 * directories, through {@link AdapterHubFormat}; {@link PeftModel#saveAdapter} writes peft4j's own
 * {@code peft_type: BOTTLENECK} files.)
 */
public final class BottleneckAdapters {
    private BottleneckAdapters() {}

    /**
     * Loads an AdapterHub bottleneck or union adapter and makes it active.
     *
     * @param peft the model
     * @param dir AdapterHub's directory
     * @param name the name to give the adapter here
     * @param trainable whether its parameters (and the head copy of a classification model) receive gradients
     * @return the adapter
     */
    public static Adapter load(PeftModel peft, Path dir, String name, boolean trainable) {
        if (!AdapterHubFormat.isAdapterHub(dir)) {
            throw new PeftException(dir + ": not an AdapterHub adapter directory (expected " + AdapterHubFormat.CONFIG_FILE
                    + " with a \"config\" object and no \"peft_type\")");
        }
        return peft.loadAdapter(dir, name, trainable);
    }

    /**
     * Writes a bottleneck or union adapter in AdapterHub's layout.
     *
     * @param peft the model
     * @param name the adapter
     * @param dir the directory
     */
    public static void saveAdapterHub(PeftModel peft, String name, Path dir) {
        AdapterHubFormat.save(peft, name, dir);
    }

    /**
     * Checks, before any work, that {@link #saveAdapterHub} can write an adapter: a bottleneck or union adapter whose
     * whole-trained modules ({@code modules_to_save}) are at most the classifier (AdapterHub's static head).
     *
     * @param peft the model
     * @param name the adapter
     * @return why it cannot, in one line, or null when it can
     */
    public static String whyNotAdapterHub(PeftModel peft, String name) {
        return AdapterHubFormat.whyNot(peft, name);
    }
}
