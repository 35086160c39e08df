package io.github.peft4j.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** BitFit on a tiny random GPT-2 (biases everywhere). */
class BitFitTest {
    @TempDir
    static Path shared;
    private static Path baseDir;

    @BeforeAll
    static void saveBase() {
        baseDir = shared.resolve("base");
        Engine.getInstance().setRandomSeed(42);
        try (TransformerModel m = Tiny.gpt2()) {
            m.save(baseDir);
        }
    }

    private static Map<String, NDArray> biases(TransformerModel model) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        model.parameters().forEach((k, p) -> {
            if (k.endsWith(".bias")) {
                out.put(k, p.array().duplicate());
            }
        });
        return out;
    }

    private static double maxDiff(Map<String, NDArray> a, Map<String, NDArray> b) {
        assertEquals(a.keySet(), b.keySet());
        double worst = 0;
        for (String k : a.keySet()) {
            worst = Math.max(worst, Tiny.diff(a.get(k), b.get(k)));
        }
        return worst;
    }

    /** Trains the trainable parameters with plain SGD; returns {first loss, last loss}. */
    private static float[] train(PeftModel peft, NDArray ids, int steps, double lr) {
        float first = 0;
        float last = 0;
        for (int step = 0; step < steps; step++) {
            Map<String, Param> params = peft.trainableParameters();
            NDArray loss;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                loss = Tiny.causalLoss(Tiny.logits(peft, ids), ids);
                gc.backward(loss);
            }
            last = loss.getFloat();
            if (step == 0) {
                first = last;
            }
            for (Param p : params.values()) {
                NDArray g = p.array().getGradient();
                NDArray w = p.array().stopGradient();
                p.set(w.sub(g.mul(Ops.scalar(g, lr)))); // a fresh leaf: no gradient carried over
                w.close();
            }
        }
        return new float[] {first, last};
    }

    @Test
    void trainableParametersAreTheSelectedBiases() {
        try (TransformerModel base = Models.load(baseDir)) {
            long allBiases = base.parameters().entrySet().stream().filter(e -> e.getKey().endsWith(".bias"))
                    .mapToLong(e -> e.getValue().numel()).sum();
            // per layer: ln_1 32 + c_attn 96 + attn.c_proj 32 + ln_2 32 + c_fc 128 + mlp.c_proj 32; + ln_f 32
            assertEquals(2 * (32 + 96 + 32 + 32 + 128 + 32) + 32, allBiases);
            long total = base.numParameters();
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("bitfit", new BitFitConfig());
            assertEquals(String.format(java.util.Locale.ROOT, "trainable params: %,d || all params: %,d || trainable%%: %.4f",
                    allBiases, total, 100.0 * allBiases / total), peft.trainableReport());
            assertEquals(new TreeSet<>(biases(base).keySet()), new TreeSet<>(peft.trainableParameters().keySet()));
            peft.deleteAdapter("bitfit");
            peft.addAdapter("attn", new BitFitConfig().targetModules("c_attn"));
            assertEquals(2 * 96, peft.trainableParameters().values().stream().mapToLong(Param::numel).sum());
        }
    }

    @Test
    void trainingReducesLossAndDisabledGivesBase(@TempDir Path tmp) throws Exception {
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = Tiny.ids(m, 3);
            PeftModel peft = PeftModel.wrap(base);
            NDArray baseLogits = Tiny.logits(peft, ids);
            Map<String, NDArray> original = biases(base);
            peft.addAdapter(PeftModel.DEFAULT, new BitFitConfig());
            float[] loss = train(peft, ids, 20, 0.5);
            System.out.printf("bitfit 20 SGD steps: loss %.4f -> %.4f%n", loss[0], loss[1]);
            assertTrue(loss[1] < loss[0] - 0.05, "loss did not decrease: " + loss[0] + " -> " + loss[1]);
            NDArray tuned = Tiny.logits(peft, ids);
            assertTrue(Tiny.diff(tuned, baseLogits) > 1e-3);
            Map<String, NDArray> tunedBiases = biases(base);
            assertTrue(maxDiff(tunedBiases, original) > 1e-3);

            try (AutoCloseable off = peft.disabled()) {
                assertEquals(0.0, Tiny.diff(Tiny.logits(peft, ids), baseLogits));
                assertEquals(0.0, maxDiff(biases(base), original));
                peft.save(tmp); // saving while disabled writes the tuned values
            }
            assertEquals(0.0, Tiny.diff(Tiny.logits(peft, ids), tuned));

            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(original.size(), f.names().size());
                NDArray saved = f.load("base_model.model.transformer.h.0.attn.c_attn.bias", m);
                assertEquals(0.0, Tiny.diff(saved, tunedBiases.get("transformer.h.0.attn.c_attn.bias")));
            }
            JsonNode cfg = new ObjectMapper().readTree(tmp.resolve("adapter_config.json").toFile());
            assertEquals("BITFIT", cfg.get("peft_type").asText());
            assertTrue(cfg.get("target_modules").isNull());

            try (TransformerModel fresh = Models.load(baseDir)) {
                PeftModel again = PeftModel.wrap(fresh);
                assertEquals(0.0, Tiny.diff(Tiny.logits(again, ids), baseLogits));
                again.loadAdapter(tmp, PeftModel.DEFAULT, false);
                assertEquals(0.0, Tiny.diff(Tiny.logits(again, ids), tuned));
                assertEquals("trainable params: 0", again.trainableReport().substring(0, 19));
            }
        }
    }

    @Test
    void deleteRestoresOriginalsAndMergeAndUnloadKeepsTuned() {
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = Tiny.ids(m, 5);
            Map<String, NDArray> original = biases(base);
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new BitFitConfig());
            train(peft, ids, 3, 0.5);
            assertTrue(maxDiff(biases(base), original) > 1e-3);
            peft.deleteAdapter("a");
            assertEquals(0.0, maxDiff(biases(base), original));
            assertTrue(base.parameters().values().stream().noneMatch(Param::isTrainable));

            peft.addAdapter("b", new BitFitConfig());
            train(peft, ids, 3, 0.5);
            Map<String, NDArray> tuned = biases(base);
            NDArray tunedLogits = Tiny.logits(peft, ids);
            TransformerModel plain = peft.mergeAndUnload();
            assertEquals(0.0, maxDiff(biases(plain), tuned));
            assertTrue(maxDiff(tuned, original) > 1e-3);
            assertEquals(0.0, Tiny.diff(plain.forward(io.github.peft4j.model.ModelInput.of(ids, null)).logits(), tunedLogits));
        }
    }

    @Test
    void secondBitFitAdapterIsRefused() {
        try (TransformerModel base = Models.load(baseDir)) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("one", new BitFitConfig());
            PeftException e = assertThrows(PeftException.class, () -> peft.addAdapter("two", new BitFitConfig()));
            assertTrue(e.getMessage().contains("'one'"), e.getMessage());
            peft.deleteAdapter("one");
            peft.addAdapter("two", new BitFitConfig().targetModules("c_fc"));
            assertEquals(2 * 128, peft.trainableParameters().values().stream().mapToLong(Param::numel).sum());
        }
    }

    @Test
    void biasesOfModulesTrainedWholeAreNotSelected(@TempDir Path tmp) throws Exception {
        // tiny BERT: per layer query/key/value/attention.output.dense 4 x 64 + attention LayerNorm 64
        // + intermediate 128 + output.dense 64 + output LayerNorm 64 = 576; embeddings LayerNorm 64
        long encoderBiases = 2 * 576 + 64;
        long pooler = 64 * 64 + 64;
        long classifier = 64 * 3 + 3;
        try (TransformerModel base = TinyModels.bert(TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(base);
            // the head is trained whole automatically (as HF PEFT does), so its original bias is not selected
            peft.addAdapter("auto", new BitFitConfig());
            Map<String, Param> t = peft.trainableParameters();
            assertEquals(encoderBiases + 64 + classifier, t.values().stream().mapToLong(Param::numel).sum(), t.keySet().toString());
            assertTrue(t.keySet().stream().filter(k -> k.startsWith("classifier.")).allMatch(k -> k.contains(".modules_to_save.")),
                    t.keySet().toString());
            assertTrue(t.containsKey("bert.pooler.dense.bias"), t.keySet().toString());
            peft.deleteAdapter("auto");

            peft.addAdapter("save", new BitFitConfig().modulesToSave(java.util.List.of("pooler.dense", "classifier")));
            t = peft.trainableParameters();
            assertEquals(encoderBiases + pooler + classifier, t.values().stream().mapToLong(Param::numel).sum(), t.keySet().toString());
            assertTrue(t.keySet().stream().filter(k -> k.contains("pooler") || k.startsWith("classifier"))
                    .allMatch(k -> k.contains(".modules_to_save.")), t.keySet().toString());
            // saved keys (a non-default adapter goes to its own subdirectory, as in HF PEFT): each bias once,
            // the whole-module copies under their plain names
            peft.save(tmp.resolve("a"));
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("a").resolve("save").resolve("adapter_model.safetensors"))) {
                TreeSet<String> keys = new TreeSet<>(f.names());
                assertTrue(keys.containsAll(java.util.List.of("base_model.model.bert.pooler.dense.weight",
                        "base_model.model.bert.pooler.dense.bias", "base_model.model.classifier.weight",
                        "base_model.model.classifier.bias", "base_model.model.bert.embeddings.LayerNorm.bias")), keys.toString());
                assertEquals(2 * 8 + 1 + 4, keys.size(), keys.toString());
            }
            peft.deleteAdapter("save");

            // explicit targets that also name a module in modules_to_save: that module is left to its copy
            // ("dense" = attention.output.dense 64, intermediate.dense 128, output.dense 64 per layer, and pooler.dense)
            peft.addAdapter("dense", new BitFitConfig().targetModules("dense").modulesToSave(java.util.List.of("pooler.dense")));
            t = peft.trainableParameters();
            assertEquals(2 * (64 + 128 + 64) + pooler + classifier, t.values().stream().mapToLong(Param::numel).sum(), t.keySet().toString());
            peft.deleteAdapter("dense");
            PeftException onlyWhole = assertThrows(PeftException.class, () -> peft.addAdapter("head",
                    new BitFitConfig().targetModules("classifier")));
            assertTrue(onlyWhole.getMessage().contains("modules_to_save [classifier]"), onlyWhole.getMessage());
        }
    }

    @Test
    void badTargetsAreNamed() {
        try (TransformerModel base = Models.load(baseDir)) {
            PeftModel peft = PeftModel.wrap(base);
            PeftException none = assertThrows(PeftException.class,
                    () -> peft.addAdapter("x", new BitFitConfig().targetModules("c_attn", "query")));
            assertTrue(none.getMessage().contains("'query'"), none.getMessage());
            PeftException noBias = assertThrows(PeftException.class,
                    () -> peft.addAdapter("y", new BitFitConfig().targetModules("wte")));
            assertTrue(noBias.getMessage().contains("transformer.wte") && noBias.getMessage().contains("bias"),
                    noBias.getMessage());
            // a failed attach leaves no BitFit registration behind
            peft.addAdapter("z", new BitFitConfig());
            assertEquals(1, peft.adapterNames().size());
        }
    }
}
