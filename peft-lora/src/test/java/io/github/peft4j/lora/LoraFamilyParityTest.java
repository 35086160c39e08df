package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * DoRA and LoRA on embeddings at HF PEFT 0.21 parity (fixtures of {@code make_lora_family_fixtures.py}): adapter
 * logits, merged logits, saved files, and five SGD steps (losses and final adapter weights). A missing fixture fails.
 */
class LoraFamilyParityTest {
    private static final double TOL = 1e-4;
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    static Path fixture(String name) {
        Path dir = Fixtures.dir(name);
        assertTrue(Files.isDirectory(dir.resolve("adapter")) || Files.isDirectory(dir.resolve("a")),
                "fixture " + name + " missing: run peft-core/src/test/python/make_lora_family_fixtures.py");
        return dir;
    }

    static Path baseOf(String name) {
        return Fixtures.dir(Fixtures.json(name, "logits.json").get("base_case").asText()).resolve("base");
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_dora", "gpt2_dora", "bert_dora", "llama_dora_embedding", "llama_lora_embedding",
            "qwen2_lora_embedding", "gpt2_lora_embedding", "bert_lora_embedding"})
    void hfAdapterGivesHfLogitsAndMergedLogits(String name) {
        Path dir = fixture(name);
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            double d = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "logits.json", "adapter_logits");
            try (AutoCloseable off = peft.disabled()) {
                double b = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "logits.json", "base_logits");
                assertTrue(b < TOL, name + " disabled: " + b);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            Map<String, NDArray> before = weights(base, m);
            peft.merge("default");
            double md = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "merged_logits.json", "merged_logits");
            peft.unmerge("default");
            double restored = 0;
            for (Map.Entry<String, NDArray> e : before.entrySet()) {
                restored = Math.max(restored, Fixtures.maxAbsDiff(base.parameters().get(e.getKey()).array(), e.getValue()));
            }
            double again = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "logits.json", "adapter_logits");
            System.out.printf("parity %s adapter max|diff| = %.3g, merged max|diff| = %.3g, unmerge restores weights to %.3g%n",
                    name, d, md, restored);
            assertTrue(d < TOL, name + " adapter: " + d);
            assertTrue(md < TOL, name + " merged: " + md);
            assertTrue(restored < 1e-5, name + " unmerge: " + restored);
            assertTrue(again < TOL, name + " after unmerge: " + again);
        }
    }

    /** Copies of every base weight a LoRA layer wraps. */
    private static Map<String, NDArray> weights(TransformerModel model, NDManager m) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        model.parameters().forEach((k, p) -> {
            if (k.endsWith("base_layer.weight")) {
                NDArray c = p.array().duplicate();
                c.attach(m);
                out.put(k, c);
            }
        });
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_dora", "gpt2_dora", "bert_dora", "llama_dora_embedding", "llama_lora_embedding",
            "qwen2_lora_embedding", "gpt2_lora_embedding", "bert_lora_embedding"})
    void savedAdapterHasHfKeysShapesAndValues(String name) throws IOException {
        Path dir = fixture(name);
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            peft.save(tmp);
            try (SafeTensorsFile hf = SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"));
                    SafeTensorsFile ours = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()), name);
                for (String k : hf.names()) {
                    NDArray theirs = hf.load(k, m);
                    NDArray mine = ours.load(k, m);
                    assertEquals(theirs.getShape(), mine.getShape(), k);
                    assertEquals(0.0, Fixtures.maxAbsDiff(mine, theirs), k);
                }
            }
            JsonNode theirs = JSON.readTree(dir.resolve("adapter/adapter_config.json").toFile());
            JsonNode mine = JSON.readTree(tmp.resolve("adapter_config.json").toFile());
            assertEquals(theirs.get("use_dora"), mine.get("use_dora"));
            try (TransformerModel fresh = Models.load(baseOf(name))) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp, "default", false);
                double d = LoraParityTest.diff(LoraParityTest.logits(again, m, name), m, name, "logits.json", "adapter_logits");
                assertTrue(d < TOL, name + " reloaded: " + d);
            }
        }
    }

    /** The base of a case with the fixture's config overrides (dropout 0), in a temporary directory. */
    private Path trainBase(String name) throws IOException {
        Path src = baseOf(name);
        JsonNode train = Fixtures.json(name, "train.json");
        ObjectNode cfg = (ObjectNode) JSON.readTree(src.resolve("config.json").toFile());
        train.get("base_config_overrides").fields().forEachRemaining(e -> cfg.set(e.getKey(), e.getValue()));
        Path dst = Files.createDirectories(tmp.resolve("base-" + name));
        Files.writeString(dst.resolve("config.json"), cfg.toString());
        Files.copy(src.resolve("model.safetensors"), dst.resolve("model.safetensors"));
        return dst;
    }

    private static List<Example> records(JsonNode records) {
        List<Example> out = new ArrayList<>();
        for (JsonNode r : records) {
            int[] ids = ints(r.get("input_ids"));
            if (r.has("label")) {
                out.add(Example.classified(ids, r.get("label").asInt()));
            } else {
                out.add(new Example(ids, ints(r.get("attention_mask")), ints(r.get("labels")), -1));
            }
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

    @ParameterizedTest
    @ValueSource(strings = {"llama_dora", "gpt2_dora", "bert_dora", "llama_dora_embedding", "llama_lora_embedding",
            "qwen2_lora_embedding", "gpt2_lora_embedding", "bert_lora_embedding"})
    void fiveSgdStepsGiveHfLossesAndWeights(String name) throws IOException {
        Path dir = fixture(name);
        JsonNode expected = Fixtures.json(name, "train.json");
        try (TransformerModel model = Models.load(trainBase(name), Device.cpu(), DataType.FLOAT32, null);
                Sgd sgd = Sgd.builder().build(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, true);
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(records(expected.get("records")))
                    .optOptimizer(sgd).optLearningRate(expected.get("lr").asDouble()).optMaxSteps(expected.get("steps").asInt())
                    .optBatchSize(expected.get("batch_size").asInt()).optShuffle(false)
                    .optMaxGradNorm(expected.get("max_grad_norm").asDouble()).build()) {
                losses = t.train().losses();
            }
            double worst = 0;
            for (int i = 0; i < losses.size(); i++) {
                worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
            }
            peft.save(tmp.resolve("trained-" + name));
            double wd = 0;
            try (SafeTensorsFile hf = SafeTensorsFile.open(dir.resolve("trained/adapter_model.safetensors"));
                    SafeTensorsFile ours = SafeTensorsFile.open(tmp.resolve("trained-" + name).resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()));
                for (String k : hf.names()) {
                    wd = Math.max(wd, Fixtures.maxAbsDiff(ours.load(k, m), hf.load(k, m)));
                }
            }
            System.out.printf("parity %s 5 SGD steps losses max|diff| = %.2e, final adapter weights max|diff| = %.2e%n",
                    name, worst, wd);
            assertEquals(expected.get("losses").size(), losses.size());
            assertTrue(worst < TOL, name + " losses " + losses + " vs " + expected.get("losses"));
            assertTrue(wd < TOL, name + " trained weights: " + wd);
        }
    }

    @Test
    void loraAndDoraActiveTogetherAndMergedInTurnAsHf() {
        String name = "llama_lora_dora_two_adapters";
        Path dir = fixture(name);
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            assertEquals(List.of("default", "second"), peft.loadAdapters(dir.resolve("adapter")));
            peft.setActive("default", "second");
            double both = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "logits.json", "both_logits");
            peft.merge("default", "second");
            double merged = LoraParityTest.diff(LoraParityTest.logits(peft, m, name), m, name, "merged_logits.json", "merged_logits");
            System.out.printf("parity %s both active max|diff| = %.3g, both merged max|diff| = %.3g%n", name, both, merged);
            assertTrue(both < TOL, "both active: " + both);
            assertTrue(merged < TOL, "merged: " + merged);
        }
    }

    @Test
    void doraRowsInAMixedBatchAreRefusedAsHf() {
        String name = "llama_dora";
        Path dir = fixture(name);
        JsonNode meta = Fixtures.json(name, "meta.json");
        assertTrue(meta.get("dora_mixed_batch_error").asText().contains("DoRA"), "HF refuses: " + meta.get("dora_mixed_batch_error"));
        try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            peft.addAdapter("plain", new LoraConfig().r(2).targetModules("q_proj"));
            ModelInput in = ModelInput.of(Fixtures.ids(m, name, "input_ids"), Fixtures.ids(m, name, "attention_mask"));
            PeftException e = assertThrows(PeftException.class,
                    () -> peft.forward(in.withRowAdapters(List.of("default", "__base__"))));
            assertTrue(e.getMessage().contains("'default' uses DoRA"), e.getMessage());
            // rows of a plain LoRA adapter still run, with the DoRA adapter loaded next to it
            peft.setActive("plain");
            NDArray mixed = peft.forward(in.withRowAdapters(List.of("plain", "__base__"))).logits();
            NDArray alone = peft.forward(in).logits();
            assertTrue(Fixtures.maxAbsDiff(mixed.get("0"), alone.get("0")) < 1e-5);
        }
    }

    @Test
    void tiedHeadReadsTheBaseEmbeddingUntilAMergeWritesIntoIt() {
        for (String name : List.of("qwen2_lora_embedding", "gpt2_lora_embedding")) {
            JsonNode meta = Fixtures.json(name, "meta.json");
            assertTrue(meta.get("lm_head_weight_is_base_embedding_weight").asBoolean());
            // HF: merging writes the update into the weight the head shares, so merged logits differ from the adapter's
            assertTrue(meta.get("max_abs_diff_merged_vs_adapter").asDouble() > 0.1, name);
            try (TransformerModel base = Models.load(baseOf(name)); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(base);
                peft.loadAdapter(fixture(name).resolve("adapter"), "default", false);
                Param wte = base.parameters().get(base.wordEmbeddingsPath() + ".base_layer.weight");
                float[] w0 = wte.array().toFloatArray();
                LoraParityTest.logits(peft, m, name);
                assertEquals(0.0, Fixtures.maxAbsDiff(wte.array(), m.create(w0, wte.shape())), "the lookup leaves the weight alone");
            }
        }
    }
}
