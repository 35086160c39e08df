package io.github.peft4j.model;

import ai.djl.Device;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.Checkpoint;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads Hugging Face model directories ({@code config.json} + safetensors, single or sharded) into peft4j
 * models, or builds randomly initialised ones from a config.
 */
public final class Models {
    private static final Logger LOG = LoggerFactory.getLogger(Models.class);
    /** Checkpoint entries that are buffers, not parameters (transformers skips them too). */
    private static final Pattern IGNORED = Pattern.compile(
            ".*\\.attn\\.(masked_)?bias|.*rotary_emb\\.inv_freq|.*position_ids|lm_head\\.weight");
    /** The supported {@code model_type} values, for error messages. */
    public static final List<String> SUPPORTED = List.of("bert", "gpt2", "llama", "mistral", "qwen2");

    private Models() {}

    /**
     * Loads a model directory in fp32 on the CPU.
     *
     * @param dir the directory
     * @return the model
     */
    public static TransformerModel load(Path dir) {
        return load(dir, Device.cpu(), DataType.FLOAT32, null);
    }

    /**
     * Loads a model directory.
     *
     * @param dir the directory holding config.json and model.safetensors (or a sharded index)
     * @param device where the weights go
     * @param dtype FLOAT32, FLOAT16 for GPU inference, or BFLOAT16 where {@link io.github.peft4j.nn.FusedOps#bf16Supported()}
     *     (weights are converted while loading; BF16 checkpoint tensors load as BF16 without conversion)
     * @param task the head to build, or null to take it from the config's {@code architectures}
     * @return the model; close it to free its weights
     */
    public static TransformerModel load(Path dir, Device device, DataType dtype, TaskType task) {
        return load(dir, HfConfig.read(dir), device, dtype, task, null);
    }

    /**
     * Loads a model directory with a given config (e.g. {@code config.json} with another label count) and head.
     *
     * @param dir the directory holding the weights (config.json there is not read)
     * @param config the config to build the model from; its {@code architectures} is set to the built class when
     *     that differs, so that a checkpoint saved from the model names its head
     * @param device where the weights go
     * @param dtype FLOAT32 or FLOAT16
     * @param task the head to build, or null to take it from the config's {@code architectures}
     * @param heads where head tensors the checkpoint lacks come from before they are initialised, or null
     * @return the model; close it to free its weights
     */
    public static TransformerModel load(Path dir, HfConfig config, Device device, DataType dtype, TaskType task,
            HeadSource heads) {
        return load(dir, config, device, dtype, task, heads, null);
    }

    /**
     * Loads a model directory, with its linear layers 4-bit: a bnb-4bit checkpoint (transformers'
     * {@code save_pretrained} of a {@code load_in_4bit} model, whose config has a {@code quantization_config}) keeps
     * its packed tensors packed; a dense checkpoint is quantised while loading, as bitsandbytes would (the same
     * packed bytes), one tensor at a time from the memory map. Embeddings, norms and the skipped modules
     * ({@code lm_head} by default) stay dense; GPT-2's Conv1D weights are transposed to {@code (out, in)} and quantised,
     * and BERT's pooler and classifier are quantised unless skipped, all as transformers does.
     *
     * @param dir the directory holding the weights (config.json there is not read)
     * @param config the config to build the model from
     * @param device where the weights go
     * @param dtype the compute dtype, FLOAT32 or FLOAT16 (4-bit weights are dequantised into it in forward)
     * @param task the head to build, or null to take it from the config's {@code architectures}
     * @param heads where head tensors the checkpoint lacks come from, or null
     * @param quantization how to quantise a dense checkpoint, or null to follow the config's
     *     {@code quantization_config} (dense when it has none)
     * @return the model; close it to free its weights
     * @throws PeftException when the checkpoint is already quantised differently,
     */
    public static TransformerModel load(Path dir, HfConfig config, Device device, DataType dtype, TaskType task,
            HeadSource heads, Quantization quantization) {
        checkDtype(dtype);
        Quantization declared = Quantization.fromConfig(config);
        if (declared != null && quantization != null && !declared.equals(quantization)) {
            throw new PeftException(config.source() + ": the checkpoint is already 4-bit quantised as " + declared
                    + "; cannot load it as " + quantization + " (pass null to keep its quantisation)");
        }
        Quantization q = quantization != null ? quantization : declared;
        if (q != null && declared == null) {
            config.json().set("quantization_config", q.toConfigJson()); // as transformers writes it on save
        }
        TaskType t = task != null ? task : taskOf(config);
        NDManager manager = NDManager.newBaseManager(device);
        try (Checkpoint ckpt = Checkpoint.open(dir)) {
            CheckpointWeights w = new CheckpointWeights(ckpt, dir.toString(), manager, dtype, basePrefix(config),
                    (float) config.number("initializer_range", 0.02)).optHeads(heads).optQuantization(q);
            TransformerModel model = build(config, t, w, manager, dtype);
            if (task != null && task != taskOf(config)) {
                // the head differs from the checkpoint's (a bare encoder loaded for classification): a checkpoint
                // saved from this model must name its class, as transformers' save_pretrained does
                config.json().putArray("architectures").add(model.architecture());
            }
            if (!w.fromHeads().isEmpty()) {
                LOG.info("{}: {} head tensors of {} taken from {}", dir, w.fromHeads().size(), model.architecture(),
                        heads.describe(w.fromHeads().get(0)).replaceAll(" tensor .*", ""));
            }
            w.warnInitialised(model.architecture());
            w.checkAllUsed(IGNORED);
            LOG.info("loaded {} from {}: {} parameters", model.architecture(), dir, model.numParameters());
            return model;
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /**
     * Builds a randomly initialised model from a config (tests, benchmarks).
     *
     * @param config the config
     * @param device where the weights go
     * @param dtype the compute dtype
     * @param task the head, or null to take it from the config
     * @return the model
     */
    public static TransformerModel random(HfConfig config, Device device, DataType dtype, TaskType task) {
        checkDtype(dtype);
        NDManager manager = NDManager.newBaseManager(device);
        try {
            return build(config, task != null ? task : taskOf(config),
                    new RandomWeights(manager, dtype, (float) config.number("initializer_range", 0.02)), manager, dtype);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /**
     * The directory a model was loaded from, as it was given ({@code <dir>/config.json}'s parent).
     *
     * @param model a model
     * @return the directory, or null for a model built in memory
     */
    public static String directoryOf(TransformerModel model) {
        String source = model.config().source();
        if (source == null || !source.endsWith("config.json")) {
            return null;
        }
        try {
            Path file = Path.of(source);
            return "config.json".equals(String.valueOf(file.getFileName())) && file.getParent() != null
                    ? file.getParent().toString() : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static void checkDtype(DataType dtype) {
        if (dtype == DataType.BFLOAT16) {
            if (!io.github.peft4j.nn.FusedOps.bf16Supported()) {
                throw new PeftException("compute dtype BFLOAT16 needs DJL's JNI with the BF16 patch and peft4j's fused"
                        + " library (scripts/with-torch.sh builds both); this engine: " + io.github.peft4j.nn.FusedOps.status());
            }
            return;
        }
        if (dtype != DataType.FLOAT32 && dtype != DataType.FLOAT16) {
            throw new PeftException("compute dtype must be FLOAT32, FLOAT16 or (scripts/with-torch.sh) BFLOAT16, got " + dtype
                    + " (BF16 checkpoints are converted while loading on the stock engine; its DJL cannot hold BF16)");
        }
    }

    private static TransformerModel build(HfConfig config, TaskType task, WeightSource w, NDManager manager, DataType dtype) {
        String type = config.modelType();
        if ("gpt2".equals(type)) {
            requireTask(config, task, TaskType.CAUSAL_LM);
            return new Gpt2Model(config, w, manager, dtype);
        }
        if (LlamaModel.MODEL_TYPES.contains(type)) {
            requireTask(config, task, TaskType.CAUSAL_LM);
            return new LlamaModel(config, w, manager, dtype);
        }
        if ("bert".equals(type)) {
            return new BertModel(config, task, w, manager, dtype);
        }
        throw new PeftException(config.source() + ": model_type '" + type + "' is not supported; supported: " + SUPPORTED);
    }

    private static void requireTask(HfConfig config, TaskType task, TaskType only) {
        if (task != only) {
            throw new PeftException(config.source() + ": model_type '" + config.modelType() + "' is supported as "
                    + only + " only, not " + task);
        }
    }

    /**
     * The task implied by a config's {@code architectures} (or its model type when absent).
     *
     * @param config the config
     * @return the task
     */
    public static TaskType taskOf(HfConfig config) {
        String type = config.modelType();
        if (!SUPPORTED.contains(type)) {
            throw new PeftException(config.source() + ": model_type '" + type + "' is not supported; supported: " + SUPPORTED);
        }
        if (!"bert".equals(type)) {
            return TaskType.CAUSAL_LM;
        }
        List<String> arch = config.architectures();
        if (arch.isEmpty()) {
            return TaskType.FEATURE_EXTRACTION;
        }
        Map<String, TaskType> known = Map.of("BertForSequenceClassification", TaskType.SEQ_CLS,
                "BertForTokenClassification", TaskType.TOKEN_CLS, "BertModel", TaskType.FEATURE_EXTRACTION);
        TaskType t = known.get(arch.get(0));
        if (t == null) {
            throw new PeftException(config.source() + ": architecture '" + arch.get(0) + "' is not supported; supported: "
                    + new TreeSet<>(known.keySet()) + " (or pass a task explicitly)");
        }
        return t;
    }

    private static String basePrefix(HfConfig config) {
        return switch (config.modelType()) {
            case "bert" -> "bert";
            case "gpt2" -> "transformer";
            default -> "model";
        };
    }
}
