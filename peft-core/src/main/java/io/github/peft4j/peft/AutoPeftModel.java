package io.github.peft4j.peft;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.Checkpoint;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.HeadSource;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/**
 * Loads a base model with the head an adapter names, as HF PEFT's {@code AutoPeftModelFor*} classes do: the
 * adapter's {@code task_type} picks the head class, so an adapter trained for sequence classification on a bare
 * encoder checkpoint ({@code BertModel}, e.g. an imported sentence-transformers model) loads on that same
 * directory as {@code BertForSequenceClassification}.
 *
 * <ul>
 *   <li>Head tensors the checkpoint lacks (classifier, pooler) come from the adapter's saved
 *       {@code modules_to_save} copies when it has them, else they are initialised with a warning, as
 *       transformers does.</li>
 *   <li>The number of labels comes from the adapter's saved {@code classifier.weight} (its rows); a model
 *       directory whose own classifier has another size is an error naming both.</li>
 *   <li>A classification adapter without a saved classifier on a checkpoint without one is an error: the head's
 *       weights exist nowhere. So is a task the architecture has no head for (GPT-2 and Llama are causal LMs).</li>
 *   <li>An adapter without {@code task_type} (or one peft4j does not know) leaves the model as its config says.</li>
 * </ul>
 *
 * <pre>{@code
 * try (TransformerModel base = AutoPeftModel.loadBase(modelDir, adapterDir, Device.cpu(), DataType.FLOAT32)) {
 *     PeftModel peft = PeftModel.wrap(base);
 *     peft.loadAdapter(adapterDir, PeftModel.DEFAULT, false);
 * }
 * }</pre>
 */
public final class AutoPeftModel {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String CONFIG_FILE = "adapter_config.json";
    private static final String WEIGHTS_FILE = "adapter_model.safetensors";
    /** Where a model weight name sits in an adapter file: tuner adapters and prompt-learning adapters. */
    private static final List<String> ADAPTER_PREFIXES = List.of("base_model.model.", "base_model.");
    /** The classification head weight whose rows are the labels. */
    private static final String CLASSIFIER = "classifier.weight";

    private AutoPeftModel() {}

    /**
     * Loads a base model and the adapter of a directory (as the frozen, active adapter {@link PeftModel#DEFAULT}).
     * Close {@code result.model()} to free the weights.
     *
     * @param modelDir the model directory
     * @param adapterDir the adapter directory ({@code adapter_config.json} + {@code adapter_model.safetensors})
     * @param device where the weights go
     * @param dtype FLOAT32, or FLOAT16 on a GPU
     * @return the PEFT model
     */
    public static PeftModel load(Path modelDir, Path adapterDir, Device device, DataType dtype) {
        TransformerModel base = loadBase(modelDir, adapterDir, device, dtype);
        try {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(adapterDir, PeftModel.DEFAULT, false);
            return peft;
        } catch (RuntimeException e) {
            base.close();
            throw e;
        }
    }

    /**
     * Loads the base model with the head the adapter's {@code task_type} names (see the class comment).
     *
     * @param modelDir the model directory
     * @param adapterDir the adapter directory, or null to load the model as its config says
     * @param device where the weights go
     * @param dtype FLOAT32, or FLOAT16 on a GPU
     * @return the model; close it to free its weights
     */
    public static TransformerModel loadBase(Path modelDir, Path adapterDir, Device device, DataType dtype) {
        return loadBase(modelDir, adapterDir, device, dtype, null);
    }

    /**
     * Loads the base model as {@link #loadBase(Path, Path, Device, DataType)}, quantising its linear layers to 4 bits
     * while loading ({@link Models#load(Path, HfConfig, Device, DataType, TaskType, io.github.peft4j.model.HeadSource,
     * io.github.peft4j.model.Quantization)}).
     *
     * @param modelDir the model directory
     * @param adapterDir the adapter directory, or null to load the model as its config says
     * @param device where the weights go
     * @param dtype FLOAT32, or FLOAT16 on a GPU
     * @param quantization how to quantise a dense checkpoint, or null to follow its config (a bnb-4bit checkpoint stays
     *     4-bit, a dense one dense)
     * @return the model; close it to free its weights
     */
    public static TransformerModel loadBase(Path modelDir, Path adapterDir, Device device, DataType dtype,
            io.github.peft4j.model.Quantization quantization) {
        Path configFile = adapterDir == null ? null : adapterDir.resolve(CONFIG_FILE);
        HfConfig config = HfConfig.read(modelDir);
        if (configFile == null || !Files.isRegularFile(configFile)) {
            return Models.load(modelDir, config, device, dtype, null, null, quantization);
        }
        AdapterFormat format = AdapterFormat.find(adapterDir); // another library's layout (AdapterHub's): its head
        AdapterFormat.Head head = format == null ? null : format.head(adapterDir);
        TaskType want = format == null ? taskOf(configFile) : head == null ? null : head.task();
        TaskType own = Models.taskOf(config);
        if (want == null) {
            return Models.load(modelDir, config, device, dtype, own, null, quantization);
        }
        if (want != own && !"bert".equals(config.modelType())) {
            throw new PeftException(configFile + ": task_type " + want + " needs a head that model_type '"
                    + config.modelType() + "' (" + modelDir + ") does not have; it is supported as " + own + " only");
        }
        if (format != null) { // the head's weights come with the adapter (its modules_to_save copy)
            HfConfig fitted = want == own ? config : head.labels() > 0 ? withLabels(config, head.labels())
                    : new HfConfig(config.json().deepCopy(), config.source());
            return Models.load(modelDir, fitted, device, dtype, want, null, quantization);
        }
        Path weights = adapterDir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(weights)) {
            return Models.load(modelDir, config, device, dtype, want, null, quantization);
        }
        try (SafeTensorsFile file = SafeTensorsFile.open(weights)) {
            HfConfig fitted = want == own ? config : withHead(config, want, modelDir, configFile, file);
            return Models.load(modelDir, fitted, device, dtype, want, new AdapterHeads(file), quantization);
        }
    }

    /** The adapter's {@code task_type}, or null when absent or unknown to peft4j. */
    private static TaskType taskOf(Path configFile) {
        JsonNode n;
        try {
            n = JSON.readTree(io.github.peft4j.io.SizeLimits.check(configFile, io.github.peft4j.io.SizeLimits.CONFIG_JSON).toFile());
        } catch (IOException e) {
            throw new PeftException(configFile + ": malformed JSON: " + e.getMessage(), e);
        }
        JsonNode t = n == null ? null : n.get("task_type");
        if (t == null || !t.isTextual()) {
            return null;
        }
        try {
            return TaskType.valueOf(t.textValue());
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    /**
     * A copy of a BERT config for another head: a classification head gets the label count of the adapter's
     * classifier ({@link Models#load(Path, HfConfig, Device, DataType, TaskType, io.github.peft4j.model.HeadSource)}
     * then sets {@code architectures}, so that a merged checkpoint saved from the model reloads with its head).
     */
    private static HfConfig withHead(HfConfig config, TaskType want, Path modelDir, Path configFile,
            SafeTensorsFile adapter) {
        if (want == TaskType.SEQ_CLS || want == TaskType.TOKEN_CLS) {
            long[] saved = adapterShape(adapter, CLASSIFIER);
            long[] own = checkpointShape(modelDir, CLASSIFIER);
            if (saved == null && own == null) {
                throw new PeftException(configFile + ": task_type " + want + " needs a classifier, but neither "
                        + adapter.path() + " (no modules_to_save 'classifier') nor " + modelDir + " (a "
                        + Models.taskOf(config) + " checkpoint) holds '" + CLASSIFIER + "'; train the adapter with"
                        + " modules_to_save [\"classifier\"] or give the model directory the adapter was trained on");
            }
            if (saved != null && own != null && saved[0] != own[0]) {
                throw new PeftException(adapter.path() + ": the saved classifier has " + saved[0] + " labels but "
                        + modelDir + "'s has " + own[0]);
            }
            return withLabels(config, (int) (saved != null ? saved[0] : own[0]));
        }
        return new HfConfig(config.json().deepCopy(), config.source());
    }

    /** A copy of a config with {@code labels} labels ({@code LABEL_i} where it has another count). */
    private static HfConfig withLabels(HfConfig config, int labels) {
        ObjectNode json = config.json().deepCopy();
        if (labels == config.numLabels()) {
            return new HfConfig(json, config.source());
        }
        json.remove("num_labels");
        ObjectNode id2label = json.putObject("id2label");
        ObjectNode label2id = json.putObject("label2id");
        for (int i = 0; i < labels; i++) {
            id2label.put(Integer.toString(i), "LABEL_" + i);
            label2id.put("LABEL_" + i, i);
        }
        return new HfConfig(json, config.source());
    }

    /** The shape of an adapter tensor holding a model weight, or null. */
    private static long[] adapterShape(SafeTensorsFile adapter, String name) {
        for (String p : ADAPTER_PREFIXES) {
            if (adapter.contains(p + name)) {
                return adapter.info(p + name).shape();
            }
        }
        return null;
    }

    /** The shape of a weight in a model directory's checkpoint, with or without the {@code bert.} prefix, or null. */
    private static long[] checkpointShape(Path modelDir, String name) {
        try (Checkpoint c = Checkpoint.open(modelDir)) {
            for (String k : List.of(name, "bert." + name)) {
                if (c.contains(k)) {
                    return c.info(k).shape();
                }
            }
            return null;
        }
    }

    /** Head tensors from an adapter file's {@code modules_to_save} copies. */
    private record AdapterHeads(SafeTensorsFile file) implements HeadSource {
        private String key(String name) {
            for (String p : ADAPTER_PREFIXES) {
                if (file.contains(p + name)) {
                    return p + name;
                }
            }
            return null;
        }

        @Override
        public long[] shape(String name) {
            String k = key(name);
            return k == null ? null : file.info(k).shape();
        }

        @Override
        public NDArray load(String name, NDManager manager, DataType dtype) {
            return file.load(key(name), manager, dtype);
        }

        @Override
        public String describe(String name) {
            String k = key(name);
            return file.path() + " tensor '" + (k == null ? name : k) + "'";
        }

        @Override
        public String toString() {
            return file.path() + " " + Arrays.toString(file.names().toArray());
        }
    }
}
