package io.github.peft4j.peft;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import io.github.peft4j.model.TaskType;
import java.util.List;

/**
 * The fields every Hugging Face PEFT {@code adapter_config.json} has. Subclasses add their method's fields;
 * Java field names are camelCase and map to HF's snake_case keys. JSON is read and written by
 * {@link PeftConfigs}: polymorphic on {@code peft_type}, unknown keys ignored (newer PEFT versions add keys),
 * keys sorted on write.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
@JsonTypeInfo(use = JsonTypeInfo.Id.NAME, include = JsonTypeInfo.As.EXISTING_PROPERTY, property = "peft_type", visible = true)
public abstract class PeftConfig {
    /** HF's {@code peft_type}, e.g. {@code LORA}. */
    protected String peftType;
    /** HF's {@code task_type}, e.g. {@code CAUSAL_LM}; may be null. */
    protected String taskType;
    /** Where the base model came from (informational). */
    protected String baseModelNameOrPath;
    /** The base model revision (informational). */
    protected String revision;
    /** Written as true, as HF PEFT does when saving. */
    protected boolean inferenceMode;
    /** HF's {@code auto_mapping} (kept as read). */
    protected Object autoMapping;
    /**
     * HF's {@code modules_to_save}: modules trained whole and saved with the adapter. Every method takes it
     * (HF PEFT has it on both its tuner and its prompt-learning configs).
     */
    protected List<String> modulesToSave;

    /**
     * @param peftType the method's {@code peft_type}
     */
    protected PeftConfig(String peftType) {
        this.peftType = peftType;
    }

    /** @return {@code peft_type} */
    public String peftType() {
        return peftType;
    }

    /** @return {@code task_type} as an enum, or null when absent or not one peft4j knows */
    public TaskType task() {
        if (taskType == null) {
            return null;
        }
        try {
            return TaskType.valueOf(taskType);
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    /** @return {@code task_type} as written */
    public String taskType() {
        return taskType;
    }

    /**
     * @param task the task type
     * @return this
     */
    public PeftConfig taskType(TaskType task) {
        this.taskType = task == null ? null : task.name();
        return this;
    }

    /** @return {@code base_model_name_or_path}: where the base model came from, or null */
    public String baseModelNameOrPath() {
        return baseModelNameOrPath;
    }

    /**
     * @param path where the base model came from (HF's {@code AutoPeftModelFor*} loads the base from it)
     * @return this
     */
    public PeftConfig baseModelNameOrPath(String path) {
        this.baseModelNameOrPath = path;
        return this;
    }

    /**
     * The modules trained whole and saved with the adapter, as {@code modules_to_save} entries (a module
     * path or a dotted suffix of one). For sequence and token classification models the classification
     * head is added automatically, as HF PEFT does.
     *
     * @return the entries, or null
     */
    public List<String> modulesToSave() {
        return modulesToSave;
    }

    /**
     * @param names modules trained whole and saved with the adapter (null for none)
     * @return this
     */
    public PeftConfig modulesToSave(List<String> names) {
        this.modulesToSave = names == null ? null : new java.util.ArrayList<>(names);
        return this;
    }

    /**
     * Checks the config's values; called before an adapter is created.
     *
     * @param where a description of the config's source, for messages
     */
    public void validate(String where) {}

    void markInference() {
        inferenceMode = true;
    }

    /**
     * Copies fields that are not written to {@code adapter_config.json} (set in Java only, e.g. prompt-tuning init
     * token ids) into a copy made through JSON, so that {@link PeftMethods#copy} keeps them. The default copies
     * nothing.
     *
     * @param copy the copy to complete (same class as this)
     */
    protected void copyRuntimeFields(PeftConfig copy) {}
}
