package io.github.peft4j.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** IA3 on GPT-2: file format, merge / unmerge, gradients, errors. */
class IA3AdapterTest {
    private static final String CASE = "gpt2_ia3";

    private static Map<String, Shape> shapes(Path file) {
        Map<String, Shape> out = new TreeMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(file)) {
            f.names().forEach(n -> out.put(n, f.info(n).djlShape()));
        }
        return out;
    }

    @Test
    void saveRoundTripMatchesHfFormatAndLogits(@TempDir Path tmp) throws Exception {
        Path dir = Fixtures.dir(CASE);
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
            NDArray ids = Fixtures.ids(m, CASE, "input_ids");
            NDArray before = Tiny.logits(peft, ids);
            peft.save(tmp);

            Map<String, Shape> saved = shapes(tmp.resolve("adapter_model.safetensors"));
            assertEquals(shapes(dir.resolve("adapter/adapter_model.safetensors")), saved);
            assertEquals(new Shape(192, 1), saved.get("base_model.model.transformer.h.0.attn.c_attn.ia3_l"));
            assertEquals(new Shape(1, 256), saved.get("base_model.model.transformer.h.0.mlp.c_proj.ia3_l"));

            JsonNode cfg = new ObjectMapper().readTree(tmp.resolve("adapter_config.json").toFile());
            assertEquals("IA3", cfg.get("peft_type").asText());
            assertEquals(List.of("c_attn", "mlp.c_proj"), List.of(cfg.get("target_modules").get(0).asText(),
                    cfg.get("target_modules").get(1).asText()));
            assertEquals("mlp.c_proj", cfg.get("feedforward_modules").get(0).asText());
            assertEquals(1, cfg.get("feedforward_modules").size());
            assertTrue(cfg.get("fan_in_fan_out").asBoolean());
            assertTrue(cfg.get("init_ia3_weights").asBoolean());
            assertEquals("CAUSAL_LM", cfg.get("task_type").asText());

            try (TransformerModel fresh = Models.load(dir.resolve("base"))) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp, PeftModel.DEFAULT, false);
                assertEquals(0.0, Tiny.diff(Tiny.logits(again, ids), before));
            }
        }
    }

    @Test
    void unmergeRestoresBaseWeights() {
        Path dir = Fixtures.dir(CASE);
        try (TransformerModel base = Models.load(dir.resolve("base"))) {
            Map<String, NDArray> original = new LinkedHashMap<>();
            base.parameters().forEach((k, p) -> original.put(k, p.array().duplicate()));
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
            Param cAttn = base.parameters().get("transformer.h.0.attn.c_attn.base_layer.weight");
            NDArray w0 = original.get("transformer.h.0.attn.c_attn.weight");
            peft.merge(PeftModel.DEFAULT);
            assertTrue(Tiny.diff(cAttn.array(), w0) > 1e-3, "merge changed nothing");
            peft.unmerge(PeftModel.DEFAULT);
            double worst = 0;
            for (Map.Entry<String, Param> e : base.parameters().entrySet()) {
                if (e.getKey().contains("ia3_l")) {
                    continue;
                }
                String plain = e.getKey().replace(".base_layer.", ".");
                worst = Math.max(worst, Tiny.diff(e.getValue().array(), original.get(plain)));
            }
            System.out.printf("ia3 unmerge max|diff| = %.3g%n", worst);
            assertTrue(worst < 1e-6, "unmerge max |diff| " + worst);
            // deleting restores the original modules in their slots
            peft.deleteAdapter(PeftModel.DEFAULT);
            assertEquals(original.keySet(), base.parameters().keySet());
        }
    }

    @Test
    void onlyAdapterParametersGetGradients() {
        try (TransformerModel base = Tiny.gpt2(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter(PeftModel.DEFAULT, new IA3Config().initIa3Weights(false));
            Map<String, Param> trainable = peft.trainableParameters();
            // default GPT-2 targets: c_attn (output, 96) and mlp.c_proj (input, 128) in 2 layers
            assertEquals(4, trainable.size());
            assertEquals(2 * (96 + 128), trainable.values().stream().mapToLong(Param::numel).sum());
            assertTrue(peft.trainableReport().startsWith("trainable params: 448 || all params: "), peft.trainableReport());
            NDArray ids = Tiny.ids(m, 1);
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(Tiny.causalLoss(Tiny.logits(peft, ids), ids));
            }
            for (Map.Entry<String, Param> e : peft.allParameters().entrySet()) {
                NDArray a = e.getValue().array();
                if (trainable.containsKey(e.getKey())) {
                    assertTrue(e.getKey().contains(".ia3_l.default"), e.getKey());
                    assertTrue(a.getGradient().abs().sum().getFloat() > 0, "no gradient for " + e.getKey());
                } else {
                    assertFalse(a.hasGradient(), "base parameter " + e.getKey() + " has a gradient");
                }
            }
        }
    }

    @Test
    void targetMatchingNothingNamesTheEntry() {
        try (TransformerModel base = Tiny.gpt2()) {
            PeftModel peft = PeftModel.wrap(base);
            PeftException e = assertThrows(PeftException.class, () -> peft.addAdapter("a",
                    new IA3Config().targetModules("c_attn", "q_proj")));
            assertTrue(e.getMessage().contains("'q_proj'"), e.getMessage());
            PeftException sub = assertThrows(PeftException.class, () -> peft.addAdapter("b",
                    new IA3Config().targetModules("c_attn").feedforwardModules("c_fc")));
            assertTrue(sub.getMessage().contains("subset"), sub.getMessage());
            assertTrue(peft.adapterNames().isEmpty());
        }
    }

    @Test
    void wrongShapeInAdapterFileNamesTheTensor(@TempDir Path tmp) throws Exception {
        Path dir = Fixtures.dir(CASE);
        Files.copy(dir.resolve("adapter/adapter_config.json"), tmp.resolve("adapter_config.json"));
        String bad = "base_model.model.transformer.h.1.attn.c_attn.ia3_l";
        try (NDManager m = NDManager.newBaseManager(); SafeTensorsFile f =
                SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"))) {
            Map<String, NDArray> t = new LinkedHashMap<>();
            for (String n : f.names()) {
                t.put(n, n.equals(bad) ? m.ones(new Shape(1, 192)) : f.load(n, m));
            }
            SafeTensorsWriter.write(tmp.resolve("adapter_model.safetensors"), t, Map.of("format", "pt"));
        }
        try (TransformerModel base = Models.load(dir.resolve("base"))) {
            PeftModel peft = PeftModel.wrap(base);
            int before = base.parameters().size();
            PeftException e = assertThrows(PeftException.class, () -> peft.loadAdapter(tmp, "x", false));
            assertTrue(e.getMessage().contains(bad) && e.getMessage().contains("(1, 192)"), e.getMessage());
            assertEquals(before, base.parameters().size(), "failed load left layers behind");
        }
    }

    @Test
    void defaultsAndFanInFanOutFixAsHf() {
        try (TransformerModel base = Tiny.gpt2()) {
            IA3Config given = new IA3Config();
            IA3Config c = (IA3Config) PeftModel.wrap(base).addAdapter("a", given).config();
            assertNull(given.targetModules(), "defaults resolve into the adapter's copy, not the caller's config");
            assertFalse(given.fanInFanOut());
            // HF's GPT-2 defaults, and Conv1D forces fan_in_fan_out = true with a warning
            assertEquals(List.of("c_attn", "mlp.c_proj"), c.targetModules().nameList());
            assertEquals(List.of("mlp.c_proj"), c.feedforwardModules().nameList());
            assertTrue(c.fanInFanOut());
        }
    }

    @Test
    void refusedAttachLeavesModelUnchanged() {
        try (TransformerModel base = Tiny.gpt2()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("s", new IA3Config().targetModules("c_attn").modulesToSave(List.of("mlp.c_proj")));
            int before = base.parameters().size();
            PeftException e = assertThrows(PeftException.class,
                    () -> peft.addAdapter("t", new IA3Config().targetModules("c_fc", "mlp.c_proj")));
            assertTrue(e.getMessage().contains("transformer.h.0.mlp.c_proj") && e.getMessage().contains("ModulesToSaveLayer"),
                    e.getMessage());
            assertEquals(before, base.parameters().size());
            assertEquals(java.util.Set.of("s"), peft.adapterNames());
        }
    }
}
