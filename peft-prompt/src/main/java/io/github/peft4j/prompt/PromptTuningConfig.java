package io.github.peft4j.prompt;

import com.fasterxml.jackson.annotation.JsonIgnore;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PromptLearningConfig;
import java.util.Arrays;
import java.util.List;

/**
 * Hugging Face PEFT's {@code PromptTuningConfig} ({@code peft_type} {@code PROMPT_TUNING}): {@code num_virtual_tokens}
 * trainable embeddings prepended to the input embeddings.
 *
 * <p>Initialisation ({@code prompt_tuning_init}): {@code RANDOM} draws N(0, 1) as {@code torch.nn.Embedding}
 * does; {@code TEXT} copies the word embeddings of token ids, repeated or cut to {@code num_virtual_tokens}
 * as HF PEFT does. peft4j does not tokenise here: give the ids of {@code prompt_tuning_init_text} with
 * {@link #initTokenIds(long...)} (they are not written to {@code adapter_config.json}; the text is, for HF).
 * HF's {@code SAMPLE_VOCAB} is not supported.
 *
 * <p>HF PEFT refuses a {@code TEXT} config without {@code tokenizer_name_or_path} or {@code prompt_tuning_init_text}
 * (its {@code __post_init__}, even when it only loads the saved embeddings), so peft4j requires the text for a new
 * {@code TEXT} adapter and, when no tokenizer is named, records {@code base_model_name_or_path} or else the directory
 * the base model was loaded from (the tokenizer of a Hugging Face model directory lives beside its weights). A
 * {@code TEXT} adapter on a model built in memory (no directory) needs {@link #tokenizerNameOrPath(String)}.
 *
 * <pre>{@code
 * new PromptTuningConfig().numVirtualTokens(8).promptTuningInit("TEXT")
 *         .promptTuningInitText("Classify the sentiment:").initTokenIds(ids);
 * }</pre>
 */
public class PromptTuningConfig extends PromptLearningConfig {
    /** The {@code peft_type} of this method. */
    public static final String PEFT_TYPE = "PROMPT_TUNING";
    /** {@code prompt_tuning_init} value: N(0, 1) initialisation. */
    public static final String RANDOM = "RANDOM";
    /** {@code prompt_tuning_init} value: initialisation from the word embeddings of token ids. */
    public static final String TEXT = "TEXT";

    /** HF's {@code prompt_tuning_init}: {@code RANDOM} (default) or {@code TEXT}. */
    protected String promptTuningInit = RANDOM;
    /** HF's {@code prompt_tuning_init_text} (informational here; the ids come from {@link #initTokenIds}). */
    protected String promptTuningInitText;
    /** HF's {@code tokenizer_name_or_path}. */
    protected String tokenizerNameOrPath;
    /** HF's {@code tokenizer_kwargs} (kept as read). */
    protected Object tokenizerKwargs;
    /** The token ids of the init text, for {@code TEXT} initialisation; not serialised. */
    @JsonIgnore
    protected long[] initTokenIds;

    /** Creates a config with HF's defaults ({@code RANDOM} init); set {@code num_virtual_tokens}. */
    public PromptTuningConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code prompt_tuning_init} */
    public String promptTuningInit() {
        return promptTuningInit;
    }

    /**
     * @param init {@code RANDOM} or {@code TEXT}
     * @return this
     */
    public PromptTuningConfig promptTuningInit(String init) {
        this.promptTuningInit = init;
        return this;
    }

    /** @return {@code prompt_tuning_init_text}, or null */
    public String promptTuningInitText() {
        return promptTuningInitText;
    }

    /**
     * @param text the init text (recorded in the config; tokenise it yourself and pass {@link #initTokenIds})
     * @return this
     */
    public PromptTuningConfig promptTuningInitText(String text) {
        this.promptTuningInitText = text;
        return this;
    }

    /** @return {@code tokenizer_name_or_path}, or null */
    public String tokenizerNameOrPath() {
        return tokenizerNameOrPath;
    }

    /**
     * @param tokenizer the tokenizer's name or path (recorded in the config)
     * @return this
     */
    public PromptTuningConfig tokenizerNameOrPath(String tokenizer) {
        this.tokenizerNameOrPath = tokenizer;
        return this;
    }

    /** @return {@code tokenizer_kwargs}, or null */
    public Object tokenizerKwargs() {
        return tokenizerKwargs;
    }

    /**
     * @param kwargs tokenizer keyword arguments (a JSON-serialisable map; only valid with {@code TEXT} init)
     * @return this
     */
    public PromptTuningConfig tokenizerKwargs(Object kwargs) {
        this.tokenizerKwargs = kwargs;
        return this;
    }

    @Override
    protected void copyRuntimeFields(io.github.peft4j.peft.PeftConfig copy) {
        ((PromptTuningConfig) copy).initTokenIds = initTokenIds == null ? null : initTokenIds.clone();
    }

    /** @return a copy of the init token ids, or null */
    public long[] initTokenIds() {
        return initTokenIds == null ? null : initTokenIds.clone();
    }

    /**
     * @param ids the token ids of the init text (used by {@code TEXT} init; not written to JSON)
     * @return this
     */
    public PromptTuningConfig initTokenIds(long... ids) {
        this.initTokenIds = ids == null ? null : ids.clone();
        return this;
    }

    @Override
    public PromptTuningConfig numVirtualTokens(int n) {
        super.numVirtualTokens(n);
        return this;
    }

    @Override
    public PromptTuningConfig taskType(TaskType task) {
        super.taskType(task);
        return this;
    }

    @Override
    public PromptTuningConfig baseModelNameOrPath(String path) {
        super.baseModelNameOrPath(path);
        return this;
    }

    @Override
    public PromptTuningConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }


    @Override
    public void validate(String where) {
        super.validate(where);
        if ("SAMPLE_VOCAB".equals(promptTuningInit)) {
            throw new PeftException(where + ": 'prompt_tuning_init' SAMPLE_VOCAB is not supported by peft4j; use "
                    + RANDOM + " or " + TEXT);
        }
        if (!RANDOM.equals(promptTuningInit) && !TEXT.equals(promptTuningInit)) {
            throw new PeftException(where + ": 'prompt_tuning_init' must be " + RANDOM + " or " + TEXT + ", found "
                    + promptTuningInit);
        }
        if (tokenizerKwargs != null && !TEXT.equals(promptTuningInit)) {
            throw new PeftException(where + ": 'tokenizer_kwargs' is only valid with prompt_tuning_init " + TEXT
                    + ", found " + promptTuningInit);
        }
        if (initTokenIds != null && initTokenIds.length == 0) {
            throw new PeftException(where + ": 'init_token_ids' is empty; give at least one token id for " + TEXT + " init");
        }
        if (TEXT.equals(promptTuningInit) && promptTuningInitText == null && !isSaved()) {
            throw new PeftException(where + ": prompt_tuning_init " + TEXT + " needs 'prompt_tuning_init_text' (HF PEFT"
                    + " refuses a " + TEXT + " config without it); set it with promptTuningInitText(...)");
        }
    }

    /**
     * Fills the shape fields as {@link PromptLearningConfig#fitTo} does and, for {@code TEXT} init without a
     * tokenizer, records where the tokenizer is: {@code base_model_name_or_path}, else the model's directory.
     *
     * @param model the base model
     * @param where the config's source, for messages
     */
    @Override
    public void fitTo(TransformerModel model, String where) {
        super.fitTo(model, where);
        if (TEXT.equals(promptTuningInit) && (tokenizerNameOrPath == null || tokenizerNameOrPath.isEmpty())) {
            String dir = baseModelNameOrPath != null && !baseModelNameOrPath.isEmpty() ? baseModelNameOrPath
                    : Models.directoryOf(model);
            if (dir == null && !isSaved()) {
                throw new PeftException(where + ": prompt_tuning_init " + TEXT + " needs 'tokenizer_name_or_path' (HF PEFT"
                        + " refuses a " + TEXT + " config without it) and the model was not loaded from a directory;"
                        + " set it with tokenizerNameOrPath(...)");
            }
            tokenizerNameOrPath = dir;
        }
    }

    @Override
    public String toString() {
        return "PromptTuningConfig{num_virtual_tokens=" + numVirtualTokens + ", prompt_tuning_init=" + promptTuningInit
                + (initTokenIds == null ? "" : ", init_token_ids=" + Arrays.toString(initTokenIds)) + "}";
    }
}
