package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.nn.Param;
import java.util.Map;

/**
 * A named adapter attached to a model by a {@link PeftMethod}. Beyond its parameters and file contents, what an
 * adapter can do is a set of small capabilities the core discovers with {@link #capability}: {@link Mergeable}
 * (fold into the base weights), {@link TrainingHooks} (extra loss, gradient masks, after-step work),
 * {@link PromptAdapter} (input side: virtual tokens, key/value prefix), {@link RowRouted} (per-row adapters in a
 * mixed batch). {@link #stateDict} / {@link #loadStateDict} are its file codec: a method whose files are not one
 * tensor per parameter (rank cutting, another library's layout) converts there, and may adjust the saved config
 * with {@link #configToSave}.
 */
public interface Adapter {
    /** @return the adapter name */
    String name();

    /** @return its config */
    PeftConfig config();

    /** @return the parameters this adapter owns or selects, by in-memory full name */
    Map<String, Param> parameters();

    /**
     * The tensors to save, keyed as HF PEFT's {@code adapter_model.safetensors} (adapter name removed).
     *
     * @return key to array
     */
    Map<String, NDArray> stateDict();

    /**
     * Copies saved values into this adapter's parameters. Every expected key must be present with the
     * expected shape; extra keys are an error.
     *
     * @param tensors key to array, as read from the file
     * @param source the file, for messages
     */
    void loadStateDict(Map<String, NDArray> tensors, String source);

    /**
     * Called when this adapter becomes active or inactive (also inside a disabled scope). Wrapping
     * adapters read the shared {@link AdapterState} instead and ignore this.
     *
     * @param active the new state
     */
    default void activeChanged(boolean active) {}

    /**
     * The config written next to {@link #stateDict}'s tensors. The default is the adapter's config; a method whose
     * saved tensors depend on its state (AdaLoRA's kept ranks) returns an updated copy.
     *
     * @return the config to save (never the live config object)
     */
    default PeftConfig configToSave() {
        return PeftMethods.copy(config());
    }

    /** Removes this adapter from the model and frees its arrays. */
    void remove();

    /**
     * Finds a capability of this adapter ({@link Mergeable}, {@link TrainingHooks}, ...). The default answers
     * with this adapter itself where it implements the interface; an adapter made of parts may answer with one
     * of them.
     *
     * @param type the capability interface
     * @param <T> the capability type
     * @return the capability, or null where this adapter does not have it
     */
    default <T> T capability(Class<T> type) {
        return type.isInstance(this) ? type.cast(this) : null;
    }
}
