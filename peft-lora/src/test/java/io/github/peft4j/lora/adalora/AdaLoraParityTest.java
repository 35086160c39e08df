package io.github.peft4j.lora.adalora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * AdaLoRA at HF PEFT 0.21 parity (fixtures of {@code make_adalora_fixtures.py}): saved adapters (one cut by a
 * rank_pattern with a zero-rank module, one on GPT-2 Conv1D) give HF's logits and merged logits and save back
 * identically; a 10-step AdamW run with the rank allocator gives HF's losses (regulariser included), final rank
 * pattern and saved adapter. A missing fixture fails.
 */
class AdaLoraParityTest {
    private static final double TOL = 1e-4;
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    static Path fixture(String name) {
        Path dir = Fixtures.dir(name);
        assertTrue(Files.isRegularFile(dir.resolve("logits.json")),
                "fixture " + name + " missing: run peft-core/src/test/python/make_adalora_fixtures.py");
        return dir;
    }

    static Path baseOf(String name) {
        return Fixtures.dir(Fixtures.json(name, "logits.json").get("base_case").asText()).resolve("base");
    }

    static NDArray logits(PeftModel peft, NDManager m, String name) {
        NDArray ids = Fixtures.ids(m, name, "input_ids");
        NDArray mask = Fixtures.ids(m, name, "attention_mask");
        return peft.forward(ModelInput.of(ids, mask)).logits();
    }

    /** max |diff| over the positions whose attention mask is 1 (transformers' pad rows are unspecified). */
    static double diff(NDArray actual, NDManager m, String name, String file, String key) {
        NDArray expected = Fixtures.logits(m, name, file, key);
        NDArray keep = Fixtures.ids(m, name, "attention_mask").toType(DataType.FLOAT32, false).expandDims(2);
        return Fixtures.maxAbsDiff(actual.mul(keep), expected.mul(keep));
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_adalora", "gpt2_adalora"})
    void hfAdapterGivesHfLogitsAndMergedLogits(String name) throws Exception {
        Path dir = fixture(name);
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            double d = diff(logits(peft, m, name), m, name, "logits.json", "adapter_logits");
            double b;
            try (AutoCloseable off = peft.disabled()) {
                b = diff(logits(peft, m, name), m, name, "logits.json", "base_logits");
            }
            peft.merge("default");
            double md = diff(logits(peft, m, name), m, name, "merged_logits.json", "merged_logits");
            peft.unmerge("default");
            double again = diff(logits(peft, m, name), m, name, "logits.json", "adapter_logits");
            System.out.printf("parity %s adapter max|diff| = %.3g, merged max|diff| = %.3g, disabled = %.3g, after unmerge = %.3g%n",
                    name, d, md, b, again);
            assertTrue(d < TOL, name + " adapter: " + d);
            assertTrue(md < TOL, name + " merged: " + md);
            assertTrue(b < TOL, name + " disabled: " + b);
            assertTrue(again < TOL, name + " after unmerge: " + again);
        }
    }

    /** Keys, shapes (zero-sized included) and values equal HF's, the config's rank_pattern too; the saved copy reloads. */
    @ParameterizedTest
    @ValueSource(strings = {"llama_adalora", "gpt2_adalora"})
    void savedAdapterHasHfKeysShapesValuesAndRankPattern(String name) throws IOException {
        Path dir = fixture(name);
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            peft.save(tmp);
            double worst = sameTensors(dir.resolve("adapter"), tmp, m);
            assertEquals(0.0, worst, name);
            JsonNode theirs = JSON.readTree(dir.resolve("adapter/adapter_config.json").toFile());
            JsonNode mine = JSON.readTree(tmp.resolve("adapter_config.json").toFile());
            for (String k : List.of("peft_type", "rank_pattern", "init_r", "target_r", "tinit", "tfinal", "deltaT", "beta1",
                    "beta2", "orth_reg_weight", "total_step", "lora_alpha", "r", "inference_mode")) {
                assertEquals(theirs.get(k), mine.get(k), name + " config key " + k);
            }
            assertEquals(new TreeSet<>(strings(theirs.get("target_modules"))), new TreeSet<>(strings(mine.get("target_modules"))));
            try (TransformerModel fresh = Models.load(baseOf(name))) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp, "default", false);
                double d = diff(logits(again, m, name), m, name, "logits.json", "adapter_logits");
                System.out.printf("parity %s saved by peft4j: tensors max|diff| = %.3g, reloaded logits max|diff| = %.3g%n",
                        name, worst, d);
                assertTrue(d < TOL, name + " reloaded: " + d);
            }
        }
    }

    @Test
    void cutModulesLoadAtTheirKeptRanksWithTheInitRScale() {
        String name = "llama_adalora";
        try (TransformerModel base = Models.load(baseOf(name))) {
            PeftModel peft = PeftModel.wrap(base);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.loadAdapter(fixture(name).resolve("adapter"), "default", false);
            Map<String, Integer> ranks = a.ranks();
            assertEquals(0, ranks.get("model.layers.0.self_attn.q_proj"));
            assertEquals(2, ranks.get("model.layers.0.self_attn.v_proj"));
            assertEquals(3, ranks.get("model.layers.1.mlp.down_proj"));
            assertEquals(4, ranks.get("model.layers.1.self_attn.q_proj"));
            assertEquals(List.of(true, false, true, false), a.rankPattern().get("model.layers.0.self_attn.v_proj"));
        }
    }

    /** HF's SVDLinear passes adapter_names= on to nn.Linear and fails; peft4j refuses such a batch by name. */
    @Test
    void mixedBatchIsRefusedAsHf() {
        String name = "llama_adalora";
        JsonNode meta = Fixtures.json(name, "meta.json");
        assertTrue(meta.get("mixed_batch_error").asText().contains("adapter_names"), meta.get("mixed_batch_error").asText());
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(fixture(name).resolve("adapter"), "default", false);
            ModelInput in = ModelInput.of(Fixtures.ids(m, name, "input_ids"), Fixtures.ids(m, name, "attention_mask"));
            PeftException e = assertThrows(PeftException.class, () -> peft.forward(in.withRowAdapters(List.of("default", "__base__"))));
            assertTrue(e.getMessage().contains("ADALORA adapter 'default' cannot run per row"), e.getMessage());
        }
    }

    /**
     * Ten AdamW steps (lr 0.01, weight decay 0.01, no clipping) from HF's initial adapter, with HF's order: loss (task +
     * orth_reg_weight · regulariser) → backward → step → update_and_allocate(step) → zero grad. Every loss, the final
     * rank pattern (a zero-rank module included), the saved tensors and the trained logits match HF.
     */
    @Test
    void tenAdamWStepsGiveHfLossesRankPatternAndAdapter() throws IOException {
        String name = "llama_adalora_train";
        Path dir = fixture(name);
        JsonNode expected = Fixtures.json(name, "train.json");
        try (TransformerModel model = Models.load(baseOf(name), Device.cpu(), DataType.FLOAT32, null);
                AdamW adamw = AdamW.builder().betas(expected.get("betas").get(0).asDouble(), expected.get("betas").get(1).asDouble())
                        .eps(expected.get("eps").asDouble()).weightDecay(expected.get("weight_decay").asDouble()).build();
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.loadAdapter(dir.resolve("init"), PeftModel.DEFAULT, true);
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(records(expected.get("records")))
                    .optOptimizer(adamw).optLearningRate(expected.get("lr").asDouble()).optMaxSteps(expected.get("steps").asInt())
                    .optBatchSize(expected.get("batch_size").asInt()).optShuffle(false).optMaxGradNorm(0).build()) {
                losses = t.train().losses();
            }
            double worst = 0;
            for (int i = 0; i < losses.size(); i++) {
                worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
            }
            Map<String, List<Boolean>> pattern = a.rankPattern();
            assertNotNull(pattern, "no rank pattern after 10 steps");
            Map<String, List<Boolean>> hf = new java.util.TreeMap<>();
            expected.get("rank_pattern").fields().forEachRemaining(e -> hf.put(e.getKey(), booleans(e.getValue())));
            Map<String, List<Boolean>> ours = new java.util.TreeMap<>();
            pattern.forEach((p, v) -> ours.put(p + ".lora_E", v));
            double logits = diff(logits(peft, m, name), m, name, "logits.json", "trained_logits");
            peft.save(tmp.resolve("trained"));
            double wd = sameTensors(dir.resolve("trained"), tmp.resolve("trained"), m);
            JsonNode savedConfig = JSON.readTree(tmp.resolve("trained/adapter_config.json").toFile());
            JsonNode hfConfig = JSON.readTree(dir.resolve("trained/adapter_config.json").toFile());
            System.out.printf("parity %s 10 AdamW steps: losses max|diff| = %.2e, rank pattern equal = %s (kept %d of %d),"
                            + " saved tensors max|diff| = %.2e, trained logits max|diff| = %.2e%n", name, worst, hf.equals(ours),
                    ours.values().stream().mapToLong(v -> v.stream().filter(x -> x).count()).sum(),
                    ours.values().stream().mapToLong(List::size).sum(), wd, logits);
            System.out.println("  losses peft4j " + losses);
            System.out.println("  losses HF     " + expected.get("losses"));
            assertEquals(expected.get("losses").size(), losses.size());
            assertTrue(worst < TOL, "losses " + losses + " vs " + expected.get("losses"));
            assertEquals(hf, ours, "final rank pattern");
            assertTrue(ours.values().stream().anyMatch(v -> !v.contains(true)), "the run should leave a zero-rank module");
            assertEquals(hfConfig.get("rank_pattern"), savedConfig.get("rank_pattern"));
            assertTrue(wd < TOL, "saved tensors: " + wd);
            assertTrue(logits < TOL, "trained logits: " + logits);
            try (TransformerModel fresh = Models.load(baseOf(name))) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp.resolve("trained"), "default", false);
                double d = diff(logits(again, m, name), m, name, "logits.json", "trained_logits");
                assertTrue(d < TOL, "reloaded trained adapter: " + d);
            }
        }
    }

    /** Same key set, same shapes, and the max |diff| of the values. */
    static double sameTensors(Path hfDir, Path ourDir, NDManager m) throws IOException {
        double worst = 0;
        try (SafeTensorsFile hf = SafeTensorsFile.open(hfDir.resolve("adapter_model.safetensors"));
                SafeTensorsFile ours = SafeTensorsFile.open(ourDir.resolve("adapter_model.safetensors"))) {
            assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()));
            for (String k : hf.names()) {
                NDArray theirs = hf.load(k, m);
                NDArray mine = ours.load(k, m);
                assertEquals(theirs.getShape(), mine.getShape(), k);
                if (theirs.getShape().size() > 0) {
                    worst = Math.max(worst, Fixtures.maxAbsDiff(mine, theirs));
                }
            }
        }
        return worst;
    }

    private static List<Boolean> booleans(JsonNode n) {
        List<Boolean> out = new ArrayList<>();
        n.forEach(x -> out.add(x.asBoolean()));
        return out;
    }

    private static List<String> strings(JsonNode n) {
        List<String> out = new ArrayList<>();
        n.forEach(x -> out.add(x.asText()));
        return out;
    }

    static List<Example> records(JsonNode records) {
        List<Example> out = new ArrayList<>();
        for (JsonNode r : records) {
            int[] ids = ints(r.get("input_ids"));
            out.add(new Example(ids, ints(r.get("attention_mask")), ints(r.get("labels")), -1));
        }
        return out;
    }

    private static int[] ints(JsonNode n) {
        if (n == null) {
            return null;
        }
        int[] v = new int[n.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = n.get(i).asInt();
        }
        return v;
    }
}
