package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
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
 * AdapterHub's {@code save_adapter} directories for bottleneck adapters and union adapters (UniPELT, MAM, any
 * {@code ConfigUnion} of bottleneck, prefix tuning and LoRA), both ways: {@code adapter_config.json}
 * ({@code {"config": {...BnConfig... or "architecture": "union", "configs": [...]}, "hidden_size", "model_class",
 * "model_name", "model_type", "name", "version"}}, no {@code peft_type}), {@code adapter.safetensors} or AdapterHub's
 * default {@code pytorch_adapter.bin} (read by the safe {@link io.github.peft4j.io.TorchBinFile}, no pickled code runs)
 * with AdapterHub's keys ({@code bert.encoder.layer.0.output.adapters.NAME.adapter_down.0.weight}) and, for
 * classification models, {@code head_config.json} + {@code model_head.safetensors} / {@code pytorch_model_head.bin}
 * ({@code classifier.weight}, {@code classifier.bias}),
 * which peft4j maps to the adapter's {@code modules_to_save} copy of the head. Registered as an
 * {@link AdapterFormat}, so {@link PeftModel#loadAdapter} reads these directories directly.
 */
public final class AdapterHubFormat implements AdapterFormat {
    /** AdapterHub's files. */
    public static final String CONFIG_FILE = "adapter_config.json";
    /** The weights, safetensors variant ({@code save_adapter(..., use_safetensors=True)}). */
    public static final String WEIGHTS_FILE = "adapter.safetensors";
    /** The weights, torch pickle variant (AdapterHub's default; read safely by {@link io.github.peft4j.io.TorchBinFile}). */
    public static final String PICKLE_FILE = "pytorch_adapter.bin";
    /** The static head's weights, torch pickle variant. */
    public static final String HEAD_PICKLE_FILE = "pytorch_model_head.bin";
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

    /**
     * The classification head AdapterHub's {@code model_class} names ({@code BertForSequenceClassification},
     * {@code ...ForTokenClassification}), with {@code head_config.json}'s {@code num_labels}; null for other classes
     * (the base loads as its config says).
     */
    @Override
    public Head head(Path dir) {
        String cls = readJson(dir.resolve(CONFIG_FILE)).path("model_class").asText("");
        TaskType task = cls.endsWith("ForSequenceClassification") ? TaskType.SEQ_CLS
                : cls.endsWith("ForTokenClassification") ? TaskType.TOKEN_CLS : null;
        if (task == null) {
            return null;
        }
        Path headConfig = dir.resolve(HEAD_CONFIG_FILE);
        return new Head(task, Files.isRegularFile(headConfig) ? readJson(headConfig).path("num_labels").asInt(0) : 0);
    }

    @Override
    public PeftConfig readConfig(Path dir, TransformerModel model) {
        Path file = dir.resolve(CONFIG_FILE);
        ObjectNode root = readJson(file);
        ObjectNode cfg = (ObjectNode) root.get("config");
        String type = root.path("model_type").asText(null);
        if (type != null && !type.equals(model.config().modelType())) {
            throw new PeftException(file + ": the adapter is for model_type '" + type + "', the model is '"
                    + model.config().modelType() + "'");
        }
        if (root.has("hidden_size") && root.get("hidden_size").asInt() != model.hiddenSize()) {
            throw new PeftException(file + ": hidden_size " + root.get("hidden_size").asInt() + ", the model has "
                    + model.hiddenSize());
        }
        String modelName = root.hasNonNull("model_name") && !root.get("model_name").asText().isEmpty()
                ? root.get("model_name").asText() : null;
        JsonNode arch = cfg.get("architecture");
        String a = arch == null || arch.isNull() ? "bottleneck" : arch.asText();
        PeftConfig out;
        switch (a) {
            case "bottleneck" -> out = bottleneckConfig(cfg, file.toString());
            case "union", "prefix_tuning", "lora" -> {
                ObjectNode u = json().createObjectNode();
                u.put("peft_type", io.github.peft4j.adapters.unipelt.UnionConfig.TYPE);
                u.set("configs", "union".equals(a) ? cfg.get("configs") : json().createArrayNode().add(cfg));
                out = PeftMethods.parse(u.toString(), file.toString());
            }
            default -> throw new PeftException(file + ": config.architecture '" + a + "' is not supported (peft4j reads"
                    + " AdapterHub's bottleneck adapters, prefix_tuning, lora and their unions such as UniPELT and MAM)");
        }
        if (modelName != null) {
            out.baseModelNameOrPath(modelName);
        }
        return out;
    }

    /**
     * A bottleneck config from AdapterHub's BnConfig dict (BnConfig's defaults under the dict's values; AdapterHub
     * writes every field, older files may not).
     *
     * @param cfg the dict ({@code architecture} absent, null or {@code "bottleneck"})
     * @param where for messages
     * @return the config
     */
    public static BottleneckConfig bottleneckConfig(ObjectNode cfg, String where) {
        for (String k : REQUIRED) {
            if (!cfg.has(k)) {
                throw new PeftException(where + ": config has no '" + k + "' (a BnConfig needs " + REQUIRED + ")");
            }
        }
        ObjectNode merged = json().valueToTree(new BottleneckConfig().originalLnBefore(false));
        merged.setAll(cfg);
        merged.remove("architecture");
        merged.put("peft_type", BottleneckConfig.TYPE);
        return (BottleneckConfig) PeftMethods.parse(merged.toString(), where);
    }

    /**
     * @param c a bottleneck config
     * @return AdapterHub's BnConfig dict of it (peft4j's own keys and HF PEFT's common keys removed)
     */
    public static ObjectNode hubDict(BottleneckConfig c) {
        ObjectNode cfg = json().valueToTree(c);
        PEFT_KEYS.forEach(cfg::remove);
        cfg.remove("gate_positions");
        return cfg;
    }

    /** AdapterHub's module dicts that hold adapters by name. */
    private static final java.util.regex.Pattern CONTAINER =
            java.util.regex.Pattern.compile("(^|\\.)(adapters|invertible_adapters|loras|prefix_tunings|prefix_gates)\\.");

    /**
     * An AdapterHub key without the adapter name: {@code ...output.adapters.NAME.adapter_up.weight} ->
     * {@code ...output.adapters.adapter_up.weight} (also after {@code invertible_adapters}, {@code loras},
     * {@code prefix_tunings} and {@code prefix_gates}).
     *
     * @param key the key
     * @param name the adapter name in it
     * @return the key without it, or null when the key holds no {@code <container>.NAME.} segment
     */
    public static String withoutName(String key, String name) {
        java.util.regex.Matcher m = CONTAINER.matcher(key);
        while (m.find()) {
            if (key.startsWith(name + ".", m.end())) {
                return key.substring(0, m.end()) + key.substring(m.end() + name.length() + 1);
            }
        }
        return null;
    }

    @Override
    public Map<String, NDArray> readTensors(Path dir, Adapter adapter, NDManager manager) {
        if (!(adapter instanceof AdapterHubAdapter)) {
            throw new PeftException(dir + ": an AdapterHub directory loads as a bottleneck or union adapter, got "
                    + adapter.config().peftType());
        }
        Path weights = dir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(weights)) {
            weights = dir.resolve(PICKLE_FILE);
            if (!Files.isRegularFile(weights)) {
                throw new PeftException(dir + ": no " + WEIGHTS_FILE + " or " + PICKLE_FILE);
            }
        }
        String fileName = readJson(dir.resolve(CONFIG_FILE)).path("name").asText(null);
        java.util.Set<String> expected = adapter.stateDict().keySet();
        Map<String, NDArray> out = new LinkedHashMap<>();
        try (io.github.peft4j.io.TensorFile<?> file = io.github.peft4j.io.TensorFile.open(weights)) {
            for (String k : file.names()) {
                String local = fileName == null ? null : withoutName(k, fileName);
                if (local == null) {
                    throw new PeftException(weights + ": tensor '" + k + "' is not an AdapterHub key of adapter '" + fileName
                            + "' (expected '<module>.adapters." + fileName + ".<parameter>' or a loras / prefix_tunings /"
                            + " prefix_gates / invertible_adapters key)");
                }
                if (!expected.contains(local) && (local.contains(".prefix_tuning.pool.")
                        || local.contains(".adapters." + TIED_LN) && expected.contains(local.replace("." + TIED_LN,
                                ".adapter_norm_before.")))) {
                    continue; // AdapterHub's second key of one tensor: the pool under every layer, ln_before's LayerNorm
                }
                out.put(local, file.load(k, manager));
            }
        }
        TaskType task = adapter.config().task();
        Path head = dir.resolve(HEAD_WEIGHTS_FILE);
        if (!Files.isRegularFile(head)) {
            head = dir.resolve(HEAD_PICKLE_FILE);
        }
        if ((task == TaskType.SEQ_CLS || task == TaskType.TOKEN_CLS) && Files.isRegularFile(head)) {
            try (io.github.peft4j.io.TensorFile<?> file = io.github.peft4j.io.TensorFile.open(head)) {
                for (String k : file.names()) {
                    out.put(LayerAdapter.TUNER_PREFIX + k, file.load(k, manager));
                }
            }
        }
        return out;
    }

    /**
     * Writes an adapter as AdapterHub's {@code save_adapter(dir, name, use_safetensors=True)} does, so that
     * AdapterHub's {@code load_adapter(dir, use_safetensors=True)} reads it; for classification models also the trained
     * head copy. Union adapters (UniPELT, MAM) are written with every key AdapterHub's state dict has (the prefix pool
     * under each layer too), each as its own tensor.
     *
     * @param peft the model
     * @param name a bottleneck or union adapter's name (also the name written into the keys and the config)
     * @param dir the directory (created if needed)
     */
    public static void save(PeftModel peft, String name, Path dir) {
        String problem = whyNot(peft, name);
        if (problem != null) {
            throw new PeftException(dir + ": cannot save in AdapterHub's layout: " + problem);
        }
        Adapter a = peft.adapter(name);
        AdapterHubAdapter hub = (AdapterHubAdapter) a;
        TransformerModel model = peft.model();
        ObjectNode root = json().createObjectNode();
        root.set("config", hub.adapterHubConfig());
        root.put("hidden_size", model.hiddenSize());
        root.put("model_class", model.architecture());
        String modelName = a.config().baseModelNameOrPath();
        root.put("model_name", modelName == null ? "" : modelName);
        root.put("model_type", model.config().modelType());
        root.put("name", name);
        root.put("version", VERSION);
        Map<String, NDArray> tensors = hub.adapterHubTensors();
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

    /**
     * Why an adapter has no AdapterHub layout, or null when it has one: it must be a bottleneck or union adapter, and
     * of the modules it trains whole ({@code modules_to_save}) AdapterHub's static head file holds the classifier only.
     *
     * @param peft the model
     * @param name the adapter
     * @return the reason in one line, or null
     */
    public static String whyNot(PeftModel peft, String name) {
        Adapter a = peft.adapter(name);
        if (!(a instanceof AdapterHubAdapter)) {
            return "adapter '" + name + "' is " + a.config().peftType() + ", not a bottleneck or union adapter: only those"
                    + " have an AdapterHub layout";
        }
        TransformerModel model = peft.model();
        if (model.task() != TaskType.SEQ_CLS && model.task() != TaskType.TOKEN_CLS) {
            return null;
        }
        List<String> extra = Targets.modulesToSave(model, a.config()).stream().filter(p -> !p.equals(HEAD_MODULE)).toList();
        return extra.isEmpty() ? null : "adapter '" + name + "' also trains " + extra + " whole (modules_to_save), but"
                + " AdapterHub's files hold the adapter and the '" + HEAD_MODULE + "' head only";
    }

    /** The module AdapterHub's static classification head file holds. */
    private static final String HEAD_MODULE = "classifier";

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
