package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterFormat;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.Targets;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdapterHub's {@code save_adapter} directories for bottleneck adapters, both ways: {@code adapter_config.json}
 * ({@code {"config": {...BnConfig...}, "hidden_size", "model_class", "model_name", "model_type", "name",
 * "version"}}, no {@code peft_type}), {@code adapter.safetensors} with AdapterHub's keys
 * ({@code bert.encoder.layer.0.output.adapters.NAME.adapter_down.0.weight}) and, for classification models,
 * {@code head_config.json} + {@code model_head.safetensors} ({@code classifier.weight}, {@code classifier.bias}),
 * which peft4j maps to the adapter's {@code modules_to_save} copy of the head. Registered as an
 * {@link AdapterFormat}, so {@link PeftModel#loadAdapter} reads these directories directly.
 */
public final class AdapterHubFormat implements AdapterFormat {
    /** AdapterHub's files. */
    public static final String CONFIG_FILE = "adapter_config.json";
    /** The weights, safetensors variant ({@code save_adapter(..., use_safetensors=True)}). */
    public static final String WEIGHTS_FILE = "adapter.safetensors";
    /** The weights, torch pickle variant (not read: convert it to safetensors). */
    public static final String PICKLE_FILE = "pytorch_adapter.bin";
    /** The static head's config. */
    public static final String HEAD_CONFIG_FILE = "head_config.json";
    /** The static head's weights. */
    public static final String HEAD_WEIGHTS_FILE = "model_head.safetensors";
    /** The version string written (the AdapterHub release whose layout this is). */
    public static final String VERSION = "adapters.1.2.0";
    /** The segment before AdapterHub's ln_before LayerNorm's duplicate keys. */
    private static final String TIED_LN = "adapter_down.0.";

    private static final List<String> PEFT_KEYS = List.of("peft_type", "task_type", "base_model_name_or_path", "revision",
            "inference_mode", "auto_mapping", "modules_to_save");
    private static final List<String> REQUIRED = List.of("mh_adapter", "output_adapter", "reduction_factor", "non_linearity");

    /** For {@link java.util.ServiceLoader}. */
    public AdapterHubFormat() {}

    private static ObjectMapper json() {
        return PeftMethods.mapper();
    }

    private static ObjectNode readJson(Path file) {
        try {
            JsonNode n = json().readTree(io.github.peft4j.io.SizeLimits.check(file, io.github.peft4j.io.SizeLimits.CONFIG_JSON).toFile());
            if (!(n instanceof ObjectNode o)) {
                throw new PeftException(file + ": expected a JSON object");
            }
            return o;
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read JSON: " + e.getMessage(), e);
        }
    }

    /**
     * @param dir a directory
     * @return whether it holds an AdapterHub adapter ({@code adapter_config.json} with a {@code config} object and no
     *     {@code peft_type})
     */
    public static boolean isAdapterHub(Path dir) {
        Path f = dir.resolve(CONFIG_FILE);
        if (!Files.isRegularFile(f)) {
            return false;
        }
        ObjectNode n = readJson(f);
        return !n.has("peft_type") && n.get("config") instanceof ObjectNode;
    }

    @Override
    public boolean recognises(Path dir) {
        return isAdapterHub(dir);
    }

    @Override
    public PeftConfig readConfig(Path dir, TransformerModel model) {
        Path file = dir.resolve(CONFIG_FILE);
        ObjectNode root = readJson(file);
        ObjectNode cfg = (ObjectNode) root.get("config");
        JsonNode arch = cfg.get("architecture");
        if (arch != null && !arch.isNull() && !"bottleneck".equals(arch.asText())) {
            throw new PeftException(file + ": config.architecture '" + arch.asText()
                    + "' is not a bottleneck adapter (peft4j reads AdapterHub's bottleneck adapters: seq_bn, double_seq_bn,"
                    + " par_bn and other BnConfig)");
        }
        for (String k : REQUIRED) {
            if (!cfg.has(k)) {
                throw new PeftException(file + ": config has no '" + k + "' (a BnConfig needs " + REQUIRED + ")");
            }
        }
        String type = root.path("model_type").asText(null);
        if (type != null && !type.equals(model.config().modelType())) {
            throw new PeftException(file + ": the adapter is for model_type '" + type + "', the model is '"
                    + model.config().modelType() + "'");
        }
        if (root.has("hidden_size") && root.get("hidden_size").asInt() != model.hiddenSize()) {
            throw new PeftException(file + ": hidden_size " + root.get("hidden_size").asInt() + ", the model has "
                    + model.hiddenSize());
        }
        // BnConfig's defaults under the file's values (AdapterHub writes every field; older files may not)
        ObjectNode merged = json().valueToTree(new BottleneckConfig().originalLnBefore(false));
        merged.setAll(cfg);
        merged.remove("architecture");
        merged.put("peft_type", BottleneckConfig.TYPE);
        if (root.hasNonNull("model_name") && !root.get("model_name").asText().isEmpty()) {
            merged.put("base_model_name_or_path", root.get("model_name").asText());
        }
        return PeftMethods.parse(merged.toString(), file.toString());
    }

    @Override
    public Map<String, NDArray> readTensors(Path dir, Adapter adapter, NDManager manager) {
        if (!(adapter instanceof BottleneckAdapter bn)) {
            throw new PeftException(dir + ": an AdapterHub directory loads as a bottleneck adapter, got "
                    + adapter.config().peftType());
        }
        Path weights = dir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(weights)) {
            throw new PeftException(dir + ": no " + WEIGHTS_FILE + (Files.isRegularFile(dir.resolve(PICKLE_FILE))
                    ? " (only the torch pickle " + PICKLE_FILE + "; save with use_safetensors=True or convert it)" : ""));
        }
        String fileName = readJson(dir.resolve(CONFIG_FILE)).path("name").asText(null);
        Map<String, NDArray> out = new LinkedHashMap<>();
        try (SafeTensorsFile file = SafeTensorsFile.open(weights)) {
            for (String k : file.names()) {
                int at = k.indexOf(BottleneckAdapter.ADAPTERS);
                String rest = at < 0 ? null : k.substring(at + BottleneckAdapter.ADAPTERS.length());
                String seg = fileName == null ? null : fileName + ".";
                if (rest == null || seg == null || !rest.startsWith(seg)) {
                    throw new PeftException(weights + ": tensor '" + k + "' is not an AdapterHub key of adapter '" + fileName
                            + "' (expected '<module>.adapters." + fileName + ".<parameter>')");
                }
                String local = rest.substring(seg.length());
                if (bn.lnBefore() && local.startsWith(TIED_LN)) {
                    continue; // the same LayerNorm as adapter_norm_before (AdapterHub's nn.Sequential keeps both keys)
                }
                out.put(k.substring(0, at) + BottleneckAdapter.ADAPTERS + local, file.load(k, manager));
            }
        }
        TaskType task = adapter.config().task();
        Path head = dir.resolve(HEAD_WEIGHTS_FILE);
        if ((task == TaskType.SEQ_CLS || task == TaskType.TOKEN_CLS) && Files.isRegularFile(head)) {
            try (SafeTensorsFile file = SafeTensorsFile.open(head)) {
                for (String k : file.names()) {
                    out.put(LayerAdapter.TUNER_PREFIX + k, file.load(k, manager));
                }
            }
        }
        return out;
    }

    /**
     * Writes an adapter as AdapterHub's {@code save_adapter(dir, name, use_safetensors=True)} does, so that
     * AdapterHub's {@code load_adapter(dir)} reads it; for classification models also the trained head copy.
     *
     * @param peft the model
     * @param name a bottleneck adapter's name (also the name written into the keys and the config)
     * @param dir the directory (created if needed)
     */
    public static void save(PeftModel peft, String name, Path dir) {
        Adapter a = peft.adapter(name);
        if (!(a instanceof BottleneckAdapter bn)) {
            throw new PeftException("adapter '" + name + "' is " + a.config().peftType()
                    + ", not a bottleneck adapter: only those have an AdapterHub layout");
        }
        TransformerModel model = peft.model();
        ObjectNode cfg = json().valueToTree(bn.bottleneckConfig());
        PEFT_KEYS.forEach(cfg::remove);
        ObjectNode root = json().createObjectNode();
        root.set("config", cfg);
        root.put("hidden_size", model.hiddenSize());
        root.put("model_class", model.architecture());
        String modelName = bn.bottleneckConfig().baseModelNameOrPathValue();
        root.put("model_name", modelName == null ? "" : modelName);
        root.put("model_type", model.config().modelType());
        root.put("name", name);
        root.put("version", VERSION);
        Map<String, NDArray> tensors = new LinkedHashMap<>();
        bn.keyed(name).forEach((k, p) -> {
            tensors.put(k, p.array());
            String norm = ".adapter_norm_before.";
            if (k.contains(norm)) { // AdapterHub's state dict has the ln_before LayerNorm under both names
                tensors.put(k.replace(norm, "." + TIED_LN), p.array());
            }
        });
        try {
            Files.createDirectories(dir);
            SafeTensorsWriter.write(dir.resolve(WEIGHTS_FILE), tensors, Map.of("format", "pt"));
            AtomicFiles.writeString(dir.resolve(CONFIG_FILE), json().writeValueAsString(root));
            Map<String, NDArray> head = headCopy(peft, name);
            if (!head.isEmpty()) {
                SafeTensorsWriter.write(dir.resolve(HEAD_WEIGHTS_FILE), head, Map.of("format", "pt"));
                AtomicFiles.writeString(dir.resolve(HEAD_CONFIG_FILE), json().writeValueAsString(headConfig(root, head)));
            }
        } catch (IOException e) {
            throw new PeftException(dir + ": cannot save adapter '" + name + "': " + e.getMessage(), e);
        }
    }

    /** The adapter's trained copies of the classification head, keyed as AdapterHub's static head file. */
    private static Map<String, NDArray> headCopy(PeftModel peft, String name) {
        TransformerModel model = peft.model();
        Map<String, NDArray> out = new LinkedHashMap<>();
        if (model.task() != TaskType.SEQ_CLS && model.task() != TaskType.TOKEN_CLS) {
            return out;
        }
        Map<String, Param> params = model.parameters();
        for (String path : Targets.modulesToSave(model, peft.adapter(name).config())) {
            String copy = path + ".modules_to_save." + name + ".";
            params.forEach((k, p) -> {
                if (k.startsWith(copy)) {
                    out.put(path + "." + k.substring(copy.length()), p.array());
                }
            });
        }
        return out;
    }

    private static ObjectNode headConfig(ObjectNode adapter, Map<String, NDArray> head) {
        ObjectNode h = json().createObjectNode();
        h.putNull("config");
        h.set("hidden_size", adapter.get("hidden_size"));
        long labels = head.entrySet().stream().filter(e -> e.getKey().endsWith(".weight")).findFirst()
                .map(e -> e.getValue().getShape().get(0)).orElse(0L);
        ObjectNode label2id = h.putObject("label2id");
        for (int i = 0; i < labels; i++) {
            label2id.put("LABEL_" + i, i);
        }
        h.set("model_class", adapter.get("model_class"));
        h.set("model_name", adapter.get("model_name"));
        h.set("model_type", adapter.get("model_type"));
        h.putNull("name");
        h.put("num_labels", labels);
        h.put("version", VERSION);
        return h;
    }
}
