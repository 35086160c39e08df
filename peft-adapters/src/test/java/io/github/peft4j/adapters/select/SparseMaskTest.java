package io.github.peft4j.adapters.select;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.AdamW;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** SPARSE_MASK: magnitude selection, bit-identical untouched entries under AdamW with weight decay, gradients, files. */
class SparseMaskTest {
    private static Map<String, float[]> weights(TransformerModel model) {
        Map<String, float[]> out = new LinkedHashMap<>();
        model.parameters().forEach((k, p) -> {
            if (k.endsWith("c_fc.base_layer.weight") || k.endsWith("c_attn.base_layer.weight")) {
                out.put(k.replace(".base_layer", ""), p.array().toFloatArray());
            }
        });
        return out;
    }

    @Test
    void untouchedEntriesStayBitIdenticalAfterTenAdamWStepsWithWeightDecay(@TempDir Path tmp) throws Exception {
        Engine.getInstance().setRandomSeed(11);
        Path baseDir = tmp.resolve("base");
        try (TransformerModel m = TinyModels.gpt2()) {
            m.save(baseDir);
        }
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = SelectTesting.ids(m, base.vocabSize(), 5);
            PeftModel peft = PeftModel.wrap(base);
            NDArray baseLogits = SelectTesting.logits(peft, ids);
            SparseMaskAdapter a = (SparseMaskAdapter) peft.addAdapter(PeftModel.DEFAULT,
                    new SparseMaskConfig().fraction(0.05).targetModules("c_attn", "c_fc"));
            Map<String, float[]> original = weights(base);
            assertEquals(4, original.size());
            // exactly the smallest 5 % by magnitude: every chosen |w| <= every other |w|
            for (Map.Entry<String, io.github.peft4j.peft.AdapterLayer> e : a.layers().entrySet()) {
                float[] w = original.get(e.getKey() + ".weight");
                long[] idx = ((SparseMaskLayer) e.getValue()).indices(PeftModel.DEFAULT).toLongArray();
                assertEquals(Math.round(0.05 * w.length), idx.length);
                java.util.Set<Long> chosen = new java.util.HashSet<>();
                float maxChosen = 0;
                for (long i : idx) {
                    chosen.add(i);
                    maxChosen = Math.max(maxChosen, Math.abs(w[(int) i]));
                }
                float minOther = Float.MAX_VALUE;
                for (int i = 0; i < w.length; i++) {
                    if (!chosen.contains((long) i)) {
                        minOther = Math.min(minOther, Math.abs(w[i]));
                    }
                }
                assertTrue(maxChosen <= minOther, e.getKey() + ": " + maxChosen + " > " + minOther);
            }
            long k = a.parameters().values().stream().mapToLong(Param::numel).sum();
            assertEquals(k, peft.trainableParameters().values().stream().mapToLong(Param::numel).sum());

            double[] loss;
            try (AdamW adam = AdamW.builder().weightDecay(0.1).build()) {
                loss = SelectTesting.train(peft, ids, adam, 10, 0.05);
                // the optimizer's moments exist for the selected entries only
                adam.state().forEach((key, v) -> {
                    if (!key.equals("step")) {
                        String param = key.substring(key.indexOf('.') + 1);
                        assertEquals(a.parameters().get(param).shape(), v.getShape(), key);
                    }
                });
            }
            System.out.printf("SPARSE_MASK %d of %d entries, 10 AdamW steps (wd 0.1): loss %.4f -> %.4f%n", k,
                    original.values().stream().mapToLong(w -> w.length).sum(), loss[0], loss[1]);
            assertTrue(loss[1] < loss[0] - 0.1, "loss did not decrease");
            // the base weights are never written while unmerged
            Map<String, float[]> after = weights(base);
            for (String key : original.keySet()) {
                assertTrue(java.util.Arrays.equals(original.get(key), after.get(key)), key);
            }
            NDArray tuned = SelectTesting.logits(peft, ids);
            assertTrue(SelectTesting.diff(tuned, baseLogits) > 1e-3);
            // merged: exactly the selected entries changed, every other entry bit-identical
            peft.merge(PeftModel.DEFAULT);
            long changed = 0;
            long untouchedDiffer = 0;
            for (Map.Entry<String, io.github.peft4j.peft.AdapterLayer> e : a.layers().entrySet()) {
                float[] before = original.get(e.getKey() + ".weight");
                float[] merged = ((SparseMaskLayer) e.getValue()).projection().dense().weight().array().toFloatArray();
                java.util.Set<Long> chosen = new java.util.HashSet<>();
                for (long i : ((SparseMaskLayer) e.getValue()).indices(PeftModel.DEFAULT).toLongArray()) {
                    chosen.add(i);
                }
                for (int i = 0; i < before.length; i++) {
                    boolean same = Float.floatToRawIntBits(before[i]) == Float.floatToRawIntBits(merged[i]);
                    if (chosen.contains((long) i)) {
                        changed += same ? 0 : 1;
                    } else {
                        untouchedDiffer += same ? 0 : 1;
                    }
                }
            }
            System.out.printf("SPARSE_MASK merged: %d of %d selected entries changed, %d unselected entries differ%n",
                    changed, k, untouchedDiffer);
            assertEquals(0, untouchedDiffer);
            assertTrue(changed > k * 0.9, "changed " + changed);
            assertTrue(SelectTesting.diff(SelectTesting.logits(peft, ids), tuned) < 1e-5);
            peft.unmerge(PeftModel.DEFAULT);
            Map<String, float[]> unmerged = weights(base);
            for (String key : original.keySet()) {
                assertTrue(java.util.Arrays.equals(original.get(key), unmerged.get(key)), "unmerge " + key);
            }

            peft.save(tmp.resolve("out"));
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("out/adapter_model.safetensors"))) {
                assertTrue(f.names().contains("base_model.model.transformer.h.0.attn.c_attn.sparse_indices"), f.names().toString());
                assertTrue(f.names().contains("base_model.model.transformer.h.0.attn.c_attn.sparse_values"), f.names().toString());
                assertEquals(8, f.names().size());
            }
            try (TransformerModel fresh = Models.load(baseDir)) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp.resolve("out"), PeftModel.DEFAULT, false);
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(again, ids), tuned));
            }
        }
    }

    @Test
    void valueGradientsMatchFiniteDifferences() {
        Engine.getInstance().setRandomSeed(3);
        try (TransformerModel base = TinyModels.gpt2(); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = SelectTesting.ids(m, base.vocabSize(), 9);
            PeftModel peft = PeftModel.wrap(base);
            SparseMaskAdapter a = (SparseMaskAdapter) peft.addAdapter(PeftModel.DEFAULT,
                    new SparseMaskConfig().fraction(0.02).criterion("largest").targetModules("c_fc"));
            Param values = ((SparseMaskLayer) a.layers().get("transformer.h.0.mlp.c_fc")).values(PeftModel.DEFAULT);
            NDArray grad;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(SelectTesting.causalLoss(SelectTesting.logits(peft, ids), ids));
                grad = values.array().getGradient().duplicate();
            }
            float[] g = grad.toFloatArray();
            double worst = 0;
            for (int i = 0; i < 5; i++) {
                double fd = TinyModels.finiteDifference(values, i, 1e-2f,
                        () -> (double) SelectTesting.causalLoss(SelectTesting.logits(peft, ids), ids).getFloat());
                worst = Math.max(worst, Math.abs(fd - g[i]));
            }
            System.out.printf("SPARSE_MASK value gradient vs finite differences max|diff| = %.2e%n", worst);
            assertTrue(worst < 2e-3, "gradient " + worst);
        }
    }
}
