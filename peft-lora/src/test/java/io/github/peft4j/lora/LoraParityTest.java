package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** LoRA adapters made by HF PEFT give HF's logits, merged logits and merged weights, and save back identically. */
class LoraParityTest {
    private static final double TOL = 1e-4;
    @TempDir
    Path tmp;

    static NDArray logits(PeftModel peft, NDManager m, String name) {
        NDArray ids = Fixtures.ids(m, name, "input_ids");
        NDArray mask = Fixtures.ids(m, name, "attention_mask");
        NDArray types = Fixtures.ids(m, name, "token_type_ids");
        return peft.forward(new ModelInput(ids, null, mask, types, null, null, false)).logits();
    }

    /** Compares only positions whose attention mask is 1 when the case has padding (transformers' pad rows are unspecified). */
    static double diff(NDArray actual, NDManager m, String name, String file, String key) {
        NDArray expected = Fixtures.logits(m, name, file, key);
        NDArray mask = Fixtures.ids(m, name, "attention_mask");
        if (mask != null && actual.getShape().dimension() == 3 && actual.getShape().get(1) == mask.getShape().get(1)) {
            NDArray keep = mask.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).expandDims(2);
            return Fixtures.maxAbsDiff(actual.mul(keep), expected.mul(keep));
        }
        return Fixtures.maxAbsDiff(actual, expected);
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_lora", "gpt2_lora", "bert_lora", "llama_lora_padded", "qwen2_lora", "mistral_lora",
            "gpt2_lora_padded", "bert_tokcls_lora"})
    void hfAdapterGivesHfLogits(String name) throws Exception {
        Path dir = Fixtures.dir(name);
        assumeTrue(Files.isDirectory(dir), "fixture " + name + " not present");
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            double d = diff(logits(peft, m, name), m, name, "logits.json", "adapter_logits");
            System.out.printf("parity %s adapter max|diff| = %.3g%n", name, d);
            assertTrue(d < TOL, name + " adapter: " + d);
            try (AutoCloseable off = peft.disabled()) {
                double b = diff(logits(peft, m, name), m, name, "logits.json", "base_logits");
                assertTrue(b < TOL, name + " disabled: " + b);
            }
            if (!Files.exists(dir.resolve("merged_logits.json"))) {
                return;
            }
            Map<String, NDArray> before = copyWeights(base, m);
            peft.merge("default");
            double md = diff(logits(peft, m, name), m, name, "merged_logits.json", "merged_logits");
            System.out.printf("parity %s merged max|diff| = %.3g%n", name, md);
            assertTrue(md < TOL, name + " merged: " + md);
            peft.unmerge("default");
            for (Map.Entry<String, NDArray> e : before.entrySet()) {
                NDArray now = base.parameters().get(e.getKey()).array();
                assertTrue(Fixtures.maxAbsDiff(now, e.getValue()) < 1e-6, "unmerge restores " + e.getKey());
            }
            assertTrue(diff(logits(peft, m, name), m, name, "logits.json", "adapter_logits") < TOL);

            TransformerModel merged = peft.mergeAndUnload();
            try (SafeTensorsFile hf = SafeTensorsFile.open(dir.resolve("merged/model.safetensors"))) {
                Map<String, NDArray> ours = merged.stateDict();
                assertEquals(new TreeSet<>(hf.names()).size(), hf.names().size());
                for (String k : hf.names()) {
                    if (!ours.containsKey(k)) {
                        assertTrue(k.equals("lm_head.weight"), "merged checkpoint key missing: " + k);
                        continue;
                    }
                    double wd = Fixtures.maxAbsDiff(ours.get(k), hf.load(k, m));
                    assertTrue(wd < 1e-5, name + " merged weight " + k + ": " + wd);
                }
            }
            merged.save(tmp.resolve("merged"));
            try (TransformerModel reloaded = Models.load(tmp.resolve("merged"))) {
                double rd = diff(logits(PeftModel.wrap(reloaded), m, name), m, name, "merged_logits.json", "merged_logits");
                assertTrue(rd < TOL, name + " saved merged model: " + rd);
            }
        }
    }

    private static Map<String, NDArray> copyWeights(TransformerModel model, NDManager m) {
        Map<String, NDArray> out = new java.util.LinkedHashMap<>();
        for (Map.Entry<String, Param> e : model.parameters().entrySet()) {
            if (e.getKey().endsWith("base_layer.weight")) {
                NDArray c = e.getValue().array().duplicate();
                c.attach(m);
                out.put(e.getKey(), c);
            }
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_lora", "gpt2_lora", "bert_lora", "qwen2_lora", "mistral_lora", "bert_tokcls_lora"})
    void savedAdapterEqualsHfFiles(String name) throws Exception {
        Path dir = Fixtures.dir(name);
        assumeTrue(Files.isDirectory(dir), "fixture " + name + " not present");
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            peft.save(tmp);
            try (SafeTensorsFile hf = SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"));
                    SafeTensorsFile ours = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()));
                for (String k : hf.names()) {
                    assertEquals(Fixtures.maxAbsDiff(ours.load(k, m), hf.load(k, m)), 0.0, k);
                }
                assertEquals("pt", ours.metadata().get("format"));
            }
            ObjectMapper json = new ObjectMapper();
            JsonNode theirs = json.readTree(dir.resolve("adapter/adapter_config.json").toFile());
            JsonNode mine = json.readTree(tmp.resolve("adapter_config.json").toFile());
            for (String k : new String[] {"peft_type", "r", "lora_alpha", "lora_dropout", "fan_in_fan_out", "task_type",
                    "use_rslora", "rank_pattern", "alpha_pattern", "bias", "inference_mode", "layers_to_transform"}) {
                if (theirs.has(k)) {
                    assertEquals(norm(theirs.get(k)), norm(mine.get(k)), name + " config key " + k);
                }
            }
            assertEquals(new TreeSet<>(strings(theirs.get("target_modules"))), new TreeSet<>(strings(mine.get("target_modules"))));
            String text = Files.readString(tmp.resolve("adapter_config.json"));
            java.util.List<String> keys = new java.util.ArrayList<>();
            mine.fieldNames().forEachRemaining(keys::add);
            assertEquals(new java.util.ArrayList<>(new TreeSet<>(keys)), keys, "keys sorted: " + text);
        }
    }

    private static String norm(JsonNode n) {
        return n == null || n.isNull() ? "null" : n.isNumber() ? String.valueOf(n.doubleValue()) : n.toString();
    }

    private static java.util.List<String> strings(JsonNode n) {
        java.util.List<String> out = new java.util.ArrayList<>();
        n.forEach(x -> out.add(x.asText()));
        return out;
    }

    @org.junit.jupiter.api.Test
    void twoAdaptersFromOneDirectoryAloneAndTogether() {
        String name = "gpt2_two_adapters";
        Path dir = Fixtures.dir(name);
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            assertEquals(java.util.List.of("default", "second"), peft.loadAdapters(dir.resolve("adapter")));
            assertEquals(java.util.List.of("default"), peft.activeAdapters());
            assertTrue(diff(logits(peft, m, name), m, name, "logits.json", "adapter_logits") < TOL);
            peft.setActive("second");
            assertTrue(diff(logits(peft, m, name), m, name, "logits.json", "second_logits") < TOL);
            peft.setActive("default", "second");
            double both = diff(logits(peft, m, name), m, name, "logits.json", "both_logits");
            System.out.printf("parity %s both active max|diff| = %.3g%n", name, both);
            assertTrue(both < TOL);
            peft.save(tmp.resolve("again"));
            assertTrue(Files.isRegularFile(tmp.resolve("again/adapter_model.safetensors")));
            assertTrue(Files.isRegularFile(tmp.resolve("again/second/adapter_model.safetensors")));
        }
    }
}
