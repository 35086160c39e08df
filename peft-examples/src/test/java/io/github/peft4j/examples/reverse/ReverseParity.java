package io.github.peft4j.examples.reverse;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.AutoPeftModel;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PromptTuningConfig;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;

/**
 * The peft4j side of the reverse-parity harness (peft4j writes, the reference library reads): for every method
 * and architecture peft4j supports, builds an adapter on a tiny base with non-trivial, seeded weights, saves it
 * (and the merged checkpoint where the method merges), and records peft4j's logits.
 *
 * <p>Run by developers, not CI (the other half needs Python): {@code scripts/reverse-parity.sh} builds, runs
 * {@link #main} into a work directory, then {@code peft-core/src/test/python/reverse_parity.py} loads every case
 * in HF PEFT / transformers, compares logits within 1e-4 and writes what the reference library read and produced
 * to {@code peft-core/src/test/resources/fixtures/hf-peft-reverse/<case>.json}. {@code ReverseParityTest} re-runs
 * {@link #write} in CI and checks the files and logits against those fixtures without Python.
 *
 * <p>Bases are the tiny checkpoints of the HF → peft4j fixtures ({@code fixtures/hf-peft/<case>/base}) and
 * {@code fixtures/hf-peft-reverse/bert_encoder} (a bare {@code BertModel} without pooler, saved by transformers,
 * like the spam job's imported MiniLM).
 */
public final class ReverseParity {
    /** The seed of every random weight (DJL's engine and the per-parameter Java generators). */
    public static final long SEED = 20261201L;
    /** The inputs of every case (the HF → peft4j fixtures use the same ids). */
    public static final long[][] INPUT_IDS = {{47, 83, 38, 53, 76, 116, 24, 121}, {15, 49, 23, 105, 26, 30, 43, 30}};
    /** The reference library of the HF PEFT methods. */
    public static final String HF = "HF PEFT 0.21 / transformers 5.18";

    /**
     * One harness case.
     *
     * @param name the case (fixture file name)
     * @param model what the base is, for the table
     * @param method what the adapter is, for the table
     * @param base the base directory, relative to the fixtures root ({@code .../fixtures})
     * @param numLabels the classifier's label count for a classification adapter on a bare encoder, else 0
     * @param config the adapter config as a user would write it (HF's JSON)
     * @param initIds TEXT-init token ids, or null
     * @param merge whether the method merges (then the merged checkpoint is written and checked)
     */
    public record Case(String name, String model, String method, String base, int numLabels, String config,
            long[] initIds, boolean merge) {}

    /** Every case, in table order. */
    public static final List<Case> CASES = List.of(
            new Case("gpt2_lora", "GPT-2 (Conv1D)", "LoRA c_attn, c_proj, c_fc", "hf-peft/gpt2_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":4,\"lora_alpha\":8,"
                    + "\"target_modules\":[\"c_attn\",\"c_proj\",\"c_fc\"],\"fan_in_fan_out\":true}", null, true),
            new Case("llama_lora", "Llama (GQA)", "LoRA q, v", "hf-peft/llama_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":4,\"lora_alpha\":8,"
                    + "\"target_modules\":[\"q_proj\",\"v_proj\"]}", null, true),
            new Case("mistral_lora_all_linear", "Mistral", "LoRA all-linear", "hf-peft/mistral_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":4,\"lora_alpha\":8,"
                    + "\"target_modules\":\"all-linear\"}", null, true),
            new Case("qwen2_rslora_patterns", "Qwen2 (q/k/v bias, tied head)", "rsLoRA, rank/alpha patterns, regex",
                    "hf-peft/qwen2_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"CAUSAL_LM\",\"r\":4,\"lora_alpha\":8,\"use_rslora\":true,"
                    + "\"target_modules\":\".*\\\\.(q_proj|v_proj|up_proj)\",\"rank_pattern\":{\"q_proj\":8},"
                    + "\"alpha_pattern\":{\"v_proj\":32}}", null, true),
            new Case("bert_lora", "BERT sequence classification", "LoRA + classifier", "hf-peft/bert_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"SEQ_CLS\",\"r\":4,\"lora_alpha\":8,"
                    + "\"target_modules\":[\"query\",\"value\"]}", null, true),
            new Case("bert_tokcls_lora", "BERT token classification", "LoRA + classifier",
                    "hf-peft/bert_tokcls_lora/base", 0,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"TOKEN_CLS\",\"r\":4,\"lora_alpha\":8,"
                    + "\"target_modules\":[\"query\",\"key\",\"value\"]}", null, true),
            new Case("bert_encoder_lora", "bare BertModel (spam-job layout), 3 labels",
                    "LoRA + pooler.dense, classifier (modules_to_save)", "hf-peft-reverse/bert_encoder", 3,
                    "{\"peft_type\":\"LORA\",\"task_type\":\"SEQ_CLS\",\"r\":2,\"lora_alpha\":4,"
                    + "\"target_modules\":[\"query\",\"key\",\"value\",\"attention.output.dense\"],"
                    + "\"modules_to_save\":[\"pooler.dense\",\"classifier\"]}", null, true),
            new Case("llama_adalora", "Llama (GQA)", "AdaLoRA q, v, down_proj (init_r 4)", "hf-peft/llama_lora/base", 0,
                    "{\"peft_type\":\"ADALORA\",\"task_type\":\"CAUSAL_LM\",\"init_r\":4,\"target_r\":2,\"lora_alpha\":8,"
                    + "\"total_step\":10,\"tinit\":2,\"tfinal\":3,\"deltaT\":2,\"target_modules\":[\"q_proj\",\"v_proj\",\"down_proj\"]}",
                    null, true),
            new Case("gpt2_ia3", "GPT-2", "IA3", "hf-peft/gpt2_ia3/base", 0,
                    "{\"peft_type\":\"IA3\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"c_attn\",\"mlp.c_proj\"],"
                    + "\"feedforward_modules\":[\"mlp.c_proj\"],\"fan_in_fan_out\":true}", null, true),
            new Case("llama_ia3", "Llama", "IA3, feed-forward down_proj", "hf-peft/llama_ia3/base", 0,
                    "{\"peft_type\":\"IA3\",\"task_type\":\"CAUSAL_LM\",\"target_modules\":[\"k_proj\",\"v_proj\","
                    + "\"down_proj\"],\"feedforward_modules\":[\"down_proj\"]}", null, true),
            new Case("gpt2_prompt", "GPT-2", "prompt tuning RANDOM", "hf-peft/gpt2_prompt/base", 0,
                    "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":5}", null, false),
            new Case("llama_prompt_text", "Llama", "prompt tuning TEXT", "hf-peft/llama_prompt_text/base", 0,
                    "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":6,"
                    + "\"prompt_tuning_init\":\"TEXT\",\"prompt_tuning_init_text\":\"tiny llama\","
                    + "\"tokenizer_name_or_path\":\"tiny-llama\"}", new long[] {7, 21, 99}, false),
            new Case("bert_prompt", "BERT sequence classification", "prompt tuning + classifier",
                    "hf-peft/bert_prompt/base", 0,
                    "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":\"SEQ_CLS\",\"num_virtual_tokens\":5}", null, false),
            new Case("bert_encoder_prompt_text", "bare BertModel (spam-job layout), 3 labels",
                    "prompt tuning TEXT, no tokenizer named + pooler.dense, classifier", "hf-peft-reverse/bert_encoder", 3,
                    "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":\"SEQ_CLS\",\"num_virtual_tokens\":4,"
                    + "\"prompt_tuning_init\":\"TEXT\",\"prompt_tuning_init_text\":\"classify this email\","
                    + "\"modules_to_save\":[\"pooler.dense\",\"classifier\"]}", new long[] {12, 40, 77, 5}, false),
            new Case("gpt2_prefix", "GPT-2", "prefix tuning", "hf-peft/gpt2_prefix/base", 0,
                    "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":4}", null, false),
            new Case("llama_prefix", "Llama (GQA)", "prefix tuning", "hf-peft/llama_prefix/base", 0,
                    "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":4}", null, false),
            new Case("llama_prefix_projection", "Llama (GQA)", "prefix tuning with projection",
                    "hf-peft/llama_prefix/base", 0,
                    "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"CAUSAL_LM\",\"num_virtual_tokens\":3,"
                    + "\"prefix_projection\":true,\"encoder_hidden_size\":24}", null, false),
            new Case("bert_prefix", "BERT sequence classification", "prefix tuning + classifier",
                    "hf-peft/bert_lora/base", 0,
                    "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"SEQ_CLS\",\"num_virtual_tokens\":4}", null, false),
            new Case("bert_tokcls_prefix_projection", "BERT token classification", "prefix tuning with projection + classifier",
                    "hf-peft/bert_tokcls_lora/base", 0,
                    "{\"peft_type\":\"PREFIX_TUNING\",\"task_type\":\"TOKEN_CLS\",\"num_virtual_tokens\":3,"
                    + "\"prefix_projection\":true,\"encoder_hidden_size\":16}", null, false));

    /**
     * Methods in peft4j's own format, which no reference library reads (HF PEFT has no BitFit): the harness writes
     * them too, and {@code ReverseParityTest} checks only peft4j's own round trip (saved, reloaded on the base
     * directory, merged).
     */
    public static final List<Case> OWN_FORMAT = List.of(
            new Case("bert_bitfit", "BERT sequence classification", "BitFit + classifier", "hf-peft/bert_lora/base", 0,
                    "{\"peft_type\":\"BITFIT\",\"task_type\":\"SEQ_CLS\"}", null, true),
            new Case("bert_encoder_bitfit", "bare BertModel (spam-job layout), 3 labels",
                    "BitFit + pooler.dense, classifier", "hf-peft-reverse/bert_encoder", 3,
                    "{\"peft_type\":\"BITFIT\",\"task_type\":\"SEQ_CLS\",\"modules_to_save\":[\"pooler.dense\","
                    + "\"classifier\"]}", null, true),
            new Case("gpt2_bitfit", "GPT-2", "BitFit", "hf-peft/gpt2_lora/base", 0,
                    "{\"peft_type\":\"BITFIT\",\"task_type\":\"CAUSAL_LM\"}", null, true));

    private static final ObjectMapper JSON = new ObjectMapper();

    private ReverseParity() {}

    /** @return {@code peft-core/src/test/resources/fixtures} */
    public static Path fixturesRoot() {
        return Fixtures.root().getParent();
    }

    /**
     * @param name a case name
     * @return the case
     */
    public static Case find(String name) {
        return java.util.stream.Stream.concat(CASES.stream(), OWN_FORMAT.stream()).filter(c -> c.name().equals(name)).findFirst()
                .orElseThrow(() -> new IllegalArgumentException("no reverse-parity case '" + name + "'"));
    }

    /**
     * Logits with their shape.
     *
     * @param shape the shape
     * @param values the values, row-major
     */
    public record Logits(long[] shape, float[] values) {
        static Logits of(NDArray a) {
            return new Logits(a.getShape().getShape(), a.toType(DataType.FLOAT32, false).toFloatArray());
        }

        /**
         * @param other logits of the same shape
         * @return max |this - other|
         */
        public double maxAbsDiff(Logits other) {
            if (!java.util.Arrays.equals(shape, other.shape)) {
                throw new AssertionError("logits shape " + java.util.Arrays.toString(shape) + " != "
                        + java.util.Arrays.toString(other.shape));
            }
            double m = 0;
            for (int i = 0; i < values.length; i++) {
                m = Math.max(m, Math.abs(values[i] - other.values[i]));
            }
            return m;
        }
    }

    /**
     * What a case wrote.
     *
     * @param adapter the adapter directory
     * @param merged the merged checkpoint directory, or null
     * @param logits peft4j's logits with the adapter built in memory
     * @param reloaded peft4j's logits with the saved adapter loaded by {@link AutoPeftModel} on the base directory
     * @param mergedLogits peft4j's logits of the merged checkpoint reloaded from disk, or null
     */
    public record Written(Path adapter, Path merged, Logits logits, Logits reloaded, Logits mergedLogits) {}

    /**
     * @param c a case
     * @return its base directory
     */
    public static Path baseDir(Case c) {
        return fixturesRoot().resolve(c.base());
    }

    /**
     * Builds the case's adapter with seeded non-trivial weights, saves it under {@code out/adapter} (and the merged
     * checkpoint under {@code out/merged}) and computes the logits.
     *
     * @param c the case
     * @param out the case's output directory
     * @return what was written
     */
    public static Written write(Case c, Path out) {
        Path base = baseDir(c);
        Path adapterDir = out.resolve("adapter");
        Path mergedDir = c.merge() ? out.resolve("merged") : null;
        PeftConfig config = PeftMethods.parse(c.config(), c.name());
        if (c.initIds() != null) {
            ((PromptTuningConfig) config).initTokenIds(c.initIds());
        }
        TaskType task = config.task();
        Engine.getInstance().setRandomSeed((int) SEED);
        HfConfig hf = HfConfig.read(base);
        if (c.numLabels() > 0) {
            hf.json().put("num_labels", c.numLabels());
        }
        Logits logits;
        Logits mergedLogits = null;
        try (TransformerModel model = Models.load(base, hf, Device.cpu(), DataType.FLOAT32, task, null);
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter(PeftModel.DEFAULT, config);
            randomise(peft, config);
            peft.save(adapterDir);
            logits = Logits.of(peft.forward(input(m)).logits());
            if (mergedDir != null) {
                TransformerModel merged = peft.mergeAndUnload();
                merged.save(mergedDir);
            }
        }
        if (mergedDir != null) {
            try (TransformerModel merged = Models.load(mergedDir); NDManager m = NDManager.newBaseManager()) {
                mergedLogits = Logits.of(merged.forward(input(m)).logits());
            }
        }
        Logits reloaded;
        PeftModel back = AutoPeftModel.load(base, adapterDir, Device.cpu(), DataType.FLOAT32);
        try (TransformerModel model = back.model(); NDManager m = NDManager.newBaseManager()) {
            reloaded = Logits.of(back.forward(input(m)).logits());
        }
        return new Written(adapterDir, mergedDir, logits, reloaded, mergedLogits);
    }

    /**
     * @param m where to create them
     * @return the case inputs (all positions real)
     */
    public static ModelInput input(NDManager m) {
        long[] flat = new long[INPUT_IDS.length * INPUT_IDS[0].length];
        for (int i = 0; i < INPUT_IDS.length; i++) {
            System.arraycopy(INPUT_IDS[i], 0, flat, i * INPUT_IDS[0].length, INPUT_IDS[0].length);
        }
        Shape s = new Shape(INPUT_IDS.length, INPUT_IDS[0].length);
        return ModelInput.of(m.create(flat, s), m.ones(s, DataType.INT64));
    }

    /**
     * Gives every trainable parameter seeded values (each from its own generator, so the order does not matter):
     * LoRA, classifier and pooler copies N(0, 0.3²); IA3 vectors 1 + N(0, 0.3²); prompt and prefix embeddings
     * N(0, 1), except TEXT-initialised ones, which keep their init and get N(0, 0.05²) added.
     */
    static void randomise(PeftModel peft, PeftConfig config) {
        Set<Param> main = Collections.newSetFromMap(new IdentityHashMap<>());
        main.addAll(peft.adapter(PeftModel.DEFAULT).parameters().values());
        boolean prompt = config.peftType().equals("PROMPT_TUNING") || config.peftType().equals("PREFIX_TUNING");
        boolean text = config instanceof PromptTuningConfig p && PromptTuningConfig.TEXT.equals(p.promptTuningInit());
        for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
            Param p = e.getValue();
            NDArray old = p.array();
            float[] v = old.toType(DataType.FLOAT32, false).toFloatArray();
            Random r = new Random(SEED * 31 + e.getKey().hashCode());
            boolean ia3 = e.getKey().contains("ia3_l");
            boolean embedding = prompt && main.contains(p);
            for (int i = 0; i < v.length; i++) {
                double g = r.nextGaussian();
                v[i] = (float) (embedding ? (text ? v[i] + 0.05 * g : g) : ia3 ? 1 + 0.3 * g : 0.3 * g);
            }
            p.set(old.getManager().create(v, old.getShape()).toType(old.getDataType(), false));
        }
    }

    /**
     * Writes every case (or the named ones) into a work directory for {@code reverse_parity.py}: per case the
     * adapter, the merged checkpoint and {@code case.json} (the case, the base's absolute path, the inputs and
     * peft4j's logits).
     *
     * @param args the work directory, then optional case names
     * @throws IOException if a file cannot be written
     */
    public static void main(String[] args) throws IOException {
        if (args.length < 1) {
            System.err.println("usage: ReverseParity WORK_DIR [CASE...]");
            System.exit(2);
        }
        Path work = Path.of(args[0]).toAbsolutePath();
        List<String> only = List.of(args).subList(1, args.length);
        for (Case c : java.util.stream.Stream.concat(CASES.stream(), OWN_FORMAT.stream()).toList()) {
            if (!only.isEmpty() && !only.contains(c.name())) {
                continue;
            }
            Path out = work.resolve(c.name());
            Written w = write(c, out);
            ObjectNode n = JSON.createObjectNode();
            n.put("name", c.name());
            n.put("model", c.model());
            n.put("method", c.method());
            n.put("base", baseDir(c).toAbsolutePath().toString());
            n.put("base_relative", c.base());
            n.put("num_labels", c.numLabels());
            n.put("merge", c.merge());
            n.put("reference", OWN_FORMAT.contains(c) ? "none" : HF);
            ArrayNode ids = n.putArray("input_ids");
            for (long[] row : INPUT_IDS) {
                ArrayNode a = ids.addArray();
                for (long x : row) {
                    a.add(x);
                }
            }
            put(n, "peft4j_logits", w.logits());
            put(n, "peft4j_reloaded_logits", w.reloaded());
            if (w.mergedLogits() != null) {
                put(n, "peft4j_merged_logits", w.mergedLogits());
            }
            JSON.writerWithDefaultPrettyPrinter().writeValue(out.resolve("case.json").toFile(), n);
            System.out.printf(Locale.ROOT, "%-28s written; peft4j in-memory vs reloaded max|diff| = %.3g%n", c.name(),
                    w.logits().maxAbsDiff(w.reloaded()));
        }
    }

    private static void put(ObjectNode n, String key, Logits l) {
        ArrayNode s = n.putArray(key + "_shape");
        for (long x : l.shape()) {
            s.add(x);
        }
        ArrayNode v = n.putArray(key);
        for (float x : l.values()) {
            v.add(x);
        }
    }

    /**
     * Reads a JSON file.
     *
     * @param file the file
     * @return the tree
     */
    static com.fasterxml.jackson.databind.JsonNode readJson(Path file) {
        try {
            return JSON.readTree(Files.readString(file));
        } catch (IOException e) {
            throw new UncheckedIOException(file + ": " + e.getMessage(), e);
        }
    }
}
