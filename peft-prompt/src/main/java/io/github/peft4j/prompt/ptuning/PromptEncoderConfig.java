package io.github.peft4j.prompt.ptuning;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PromptLearningConfig;
import java.util.List;
import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Hugging Face PEFT's {@code PromptEncoderConfig} ({@code peft_type} {@code P_TUNING}): {@code num_virtual_tokens}
 * embeddings prepended to the input embeddings, as prompt tuning, but computed by a small trainable encoder from
 * a trainable embedding table (Liu et al., "GPT Understands, Too").
 *
 * <p>{@code encoder_reparameterization_type}:
 * <ul>
 *   <li>{@code MLP} (default): {@code Linear(d, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, d)}
 *       ({@code encoder_num_layers} is ignored, as in HF PEFT);
 *   <li>{@code LSTM}: a bidirectional LSTM of {@code encoder_num_layers} layers and hidden size {@code h} over the
 *       virtual tokens (dropout {@code encoder_dropout} between layers while training), then
 *       {@code Linear(2h, 2h) -> ReLU -> Linear(2h, d)}.
 * </ul>
 * {@code h} is {@code encoder_hidden_size}, by default {@code token_dim} (the model's hidden size).
 *
 * <pre>{@code
 * peft.addAdapter("default", new PromptEncoderConfig().numVirtualTokens(20)
 *         .encoderReparameterizationType(PromptEncoderConfig.LSTM).encoderHiddenSize(128));
 * }</pre>
 */
public class PromptEncoderConfig extends PromptLearningConfig {
    /** The {@code peft_type} of this method. */
    public static final String PEFT_TYPE = "P_TUNING";
    /** {@code encoder_reparameterization_type}: a three-layer MLP. */
    public static final String MLP = "MLP";
    /** {@code encoder_reparameterization_type}: a bidirectional LSTM followed by a two-layer MLP. */
    public static final String LSTM = "LSTM";

    private static final Logger LOG = LoggerFactory.getLogger(PromptEncoderConfig.class);

    /** HF's {@code encoder_reparameterization_type}: {@code MLP} (default) or {@code LSTM}. */
    protected String encoderReparameterizationType = MLP;
    /** HF's {@code encoder_hidden_size} (default {@code token_dim}). */
    protected Integer encoderHiddenSize;
    /** HF's {@code encoder_num_layers}: LSTM layers (default 2; ignored by the MLP). */
    protected int encoderNumLayers = 2;
    /** HF's {@code encoder_dropout}: dropout between LSTM layers while training (default 0). */
    protected double encoderDropout;

    /** Creates a config with HF's defaults (MLP); set {@code num_virtual_tokens}. */
    public PromptEncoderConfig() {
        super(PEFT_TYPE);
    }

    /** @return {@code encoder_reparameterization_type}: {@link #MLP} or {@link #LSTM} */
    public String encoderReparameterizationType() {
        return encoderReparameterizationType;
    }

    /**
     * @param type {@link #MLP} or {@link #LSTM} (case-insensitive)
     * @return this
     */
    public PromptEncoderConfig encoderReparameterizationType(String type) {
        this.encoderReparameterizationType = type == null ? null : type.toUpperCase(Locale.ROOT);
        return this;
    }

    /** @return whether the encoder is the LSTM form */
    public boolean isLstm() {
        return LSTM.equalsIgnoreCase(encoderReparameterizationType);
    }

    /** @return {@code encoder_hidden_size}, or null before the config is fitted to a model */
    public Integer encoderHiddenSize() {
        return encoderHiddenSize;
    }

    /**
     * @param size the encoder's hidden size
     * @return this
     */
    public PromptEncoderConfig encoderHiddenSize(int size) {
        this.encoderHiddenSize = size;
        return this;
    }

    /** @return {@code encoder_num_layers} */
    public int encoderNumLayers() {
        return encoderNumLayers;
    }

    /**
     * @param layers the number of LSTM layers (the MLP ignores it, as in HF PEFT)
     * @return this
     */
    public PromptEncoderConfig encoderNumLayers(int layers) {
        this.encoderNumLayers = layers;
        return this;
    }

    /** @return {@code encoder_dropout} */
    public double encoderDropout() {
        return encoderDropout;
    }

    /**
     * @param p the dropout probability between LSTM layers while training, in [0, 1)
     * @return this
     */
    public PromptEncoderConfig encoderDropout(double p) {
        this.encoderDropout = p;
        return this;
    }

    @Override
    public PromptEncoderConfig numVirtualTokens(int n) {
        super.numVirtualTokens(n);
        return this;
    }

    @Override
    public PromptEncoderConfig taskType(TaskType task) {
        super.taskType(task);
        return this;
    }

    @Override
    public PromptEncoderConfig baseModelNameOrPath(String path) {
        super.baseModelNameOrPath(path);
        return this;
    }

    @Override
    public PromptEncoderConfig modulesToSave(List<String> names) {
        super.modulesToSave(names);
        return this;
    }

    @Override
    public void validate(String where) {
        super.validate(where);
        if (!MLP.equalsIgnoreCase(encoderReparameterizationType) && !LSTM.equalsIgnoreCase(encoderReparameterizationType)) {
            throw new PeftException(where + ": 'encoder_reparameterization_type' must be " + MLP + " or " + LSTM
                    + ", found " + encoderReparameterizationType);
        }
        if (encoderHiddenSize != null && encoderHiddenSize <= 0) {
            throw new PeftException(where + ": 'encoder_hidden_size' must be a positive integer, found " + encoderHiddenSize);
        }
        if (isLstm() && encoderNumLayers < 1) {
            throw new PeftException(where + ": 'encoder_num_layers' must be at least 1 for the LSTM encoder, found "
                    + encoderNumLayers);
        }
        if (!(encoderDropout >= 0 && encoderDropout < 1)) {
            throw new PeftException(where + ": 'encoder_dropout' must be in [0, 1), found " + encoderDropout);
        }
        if (!isLstm() && encoderNumLayers != 2) {
            LOG.warn("{}: for MLP the argument 'encoder_num_layers' ({}) is ignored; exactly 2 MLP layers are used (as HF PEFT)",
                    where, encoderNumLayers);
        }
    }

    /**
     * Fills and checks the shape fields ({@link PromptLearningConfig#fitTo}) and defaults {@code encoder_hidden_size}
     * to {@code token_dim}, as HF PEFT's {@code _prepare_prompt_learning_config}.
     *
     * @param model the base model
     * @param where the config's source, for messages
     */
    @Override
    public void fitTo(TransformerModel model, String where) {
        super.fitTo(model, where);
        if (encoderHiddenSize == null) {
            encoderHiddenSize = tokenDim;
        }
        encoderReparameterizationType = encoderReparameterizationType.toUpperCase(Locale.ROOT);
    }

    @Override
    public String toString() {
        return "PromptEncoderConfig{num_virtual_tokens=" + numVirtualTokens + ", encoder_reparameterization_type="
                + encoderReparameterizationType + ", encoder_hidden_size=" + encoderHiddenSize
                + ", encoder_num_layers=" + encoderNumLayers + ", encoder_dropout=" + encoderDropout + "}";
    }
}
