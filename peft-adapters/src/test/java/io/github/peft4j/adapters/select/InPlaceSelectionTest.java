package io.github.peft4j.adapters.select;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.BaseNDManager;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Sgd;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** SELECTIVE and LAST_K on tiny random models; the in-place engine keeps no second copy of the selection in memory. */
class InPlaceSelectionTest {
    private static long bytes(Map<String, Param> params) {
        return params.values().stream().mapToLong(p -> p.shape().size() * 4).sum();
    }

    @Test
    void lastKTrainsTheLastQuarterSavesLoadsAndKeepsNoSecondCopy(@TempDir Path tmp) throws Exception {
        Engine.getInstance().setRandomSeed(7);
        Path baseDir = tmp.resolve("base");
        try (TransformerModel m = TinyModels.llama()) {
            m.save(baseDir);
        }
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = SelectTesting.ids(m, base.vocabSize(), 3);
            PeftModel peft = PeftModel.wrap(base);
            NDArray baseLogits = SelectTesting.logits(peft, ids);
            int before = ((BaseNDManager) base.manager()).getManagedArrays().size();
            InPlaceAdapter a = (InPlaceAdapter) peft.addAdapter(PeftModel.DEFAULT, new LastKConfig());
            int after = ((BaseNDManager) base.manager()).getManagedArrays().size();
            Map<String, Param> t = peft.trainableParameters();
            // 2 layers: a quarter rounded up is the last one, every parameter of it (4 attention + 3 MLP + 2 norms)
            assertEquals(9, t.size(), t.keySet().toString());
            assertTrue(t.keySet().stream().allMatch(k -> k.startsWith("model.layers.1.")), t.keySet().toString());
            assertEquals(1, ((LastKConfig) a.config()).lastK());
            // no second copy: the model's manager holds no new array, the originals are on disk (header + data)
            System.out.printf("LAST_K selection %d bytes in memory once; model arrays %d -> %d; spilled to disk %d bytes%n",
                    bytes(t), before, after, a.spilledBytes());
            assertEquals(before, after);
            assertTrue(a.spilledBytes() >= bytes(t) && a.spilledBytes() < bytes(t) + 4096, "spilled " + a.spilledBytes());

            double[] loss;
            try (Sgd sgd = Sgd.builder().build()) {
                loss = SelectTesting.train(peft, ids, sgd, 15, 0.5);
            }
            System.out.printf("LAST_K 15 SGD steps: loss %.4f -> %.4f%n", loss[0], loss[1]);
            assertTrue(loss[1] < loss[0] - 0.1, "loss did not decrease");
            NDArray tuned = SelectTesting.logits(peft, ids);
            assertTrue(SelectTesting.diff(tuned, baseLogits) > 1e-3);
            try (AutoCloseable off = peft.disabled()) {
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(peft, ids), baseLogits));
                assertTrue(a.spilledBytes() >= 2 * bytes(t), "tuned values spilled while inactive");
            }
            assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(peft, ids), tuned));
            peft.save(tmp.resolve("out"));
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("out/adapter_model.safetensors"))) {
                TreeSet<String> want = new TreeSet<>();
                t.keySet().forEach(k -> want.add("base_model.model." + k));
                assertEquals(want, new TreeSet<>(f.names()));
            }
            JsonNode cfg = new ObjectMapper().readTree(tmp.resolve("out/adapter_config.json").toFile());
            assertEquals("LAST_K", cfg.get("peft_type").asText());
            assertEquals(1, cfg.get("last_k").asInt());
            try (TransformerModel fresh = Models.load(baseDir)) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp.resolve("out"), PeftModel.DEFAULT, false);
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(again, ids), tuned));
                again.deleteAdapter(PeftModel.DEFAULT);
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(again, ids), baseLogits));
            }
            peft.deleteAdapter(PeftModel.DEFAULT);
            assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(peft, ids), baseLogits));
            assertEquals(0, a.spilledBytes(), "spilled files deleted on removal");
        }
    }

    @Test
    void selectiveByPatternAndParameterName() {
        try (TransformerModel base = TinyModels.gpt2()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("mlp", new SelectiveConfig().targetModules(io.github.peft4j.peft.ModuleSpec.regex(".*\\.h\\.1\\.mlp\\..*"))
                    .parameterNames(List.of("weight")));
            assertEquals(new TreeSet<>(List.of("transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight")),
                    new TreeSet<>(peft.trainableParameters().keySet()));
            // the same parameter cannot be trained in place by two adapters
            PeftException twice = assertThrows(PeftException.class, () -> peft.addAdapter("again",
                    new SelectiveConfig().targetModules("c_fc")));
            assertTrue(twice.getMessage().contains("transformer.h.1.mlp.c_fc.weight") && twice.getMessage().contains("'mlp'"),
                    twice.getMessage());
            PeftException badName = assertThrows(PeftException.class, () -> peft.addAdapter("b",
                    new SelectiveConfig().targetModules("ln_f").parameterNames(List.of("scale"))));
            assertTrue(badName.getMessage().contains("'scale'"), badName.getMessage());
            PeftException badK = assertThrows(PeftException.class, () -> peft.addAdapter("k", new LastKConfig().lastK(3)));
            assertTrue(badK.getMessage().contains("last_k") && badK.getMessage().contains("1..2"), badK.getMessage());
            assertThrows(PeftException.class, () -> io.github.peft4j.peft.PeftMethods.parse(
                    "{\"peft_type\":\"LAST_K\",\"layers_to_transform\":[0]}", "test"));
            // LN_TUNING's defaults for gpt2 (HF's table): ln_1, ln_2, ln_f, weight and bias
            peft.addAdapter("ln", new LnTuningConfig());
            assertEquals(2 * 2 * 2 + 2, peft.trainableParameters().size(), peft.trainableParameters().keySet().toString());
        }
    }
}
