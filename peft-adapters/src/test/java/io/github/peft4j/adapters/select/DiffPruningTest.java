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
import io.github.peft4j.peft.TrainingHooks;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.AdamW;
import java.nio.file.Path;
import java.util.Random;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** DIFF_PRUNING: finite-difference gradients of the layer and the L0 penalty, training with the penalty, files, merge. */
class DiffPruningTest {
    private static void randomize(Param p, long seed, double mean, double scale) {
        Random r = new Random(seed);
        float[] v = new float[(int) p.shape().size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (mean + scale * r.nextGaussian());
        }
        p.array().set(v);
    }

    @Test
    void gradientsMatchFiniteDifferences() {
        Engine.getInstance().setRandomSeed(5);
        try (TransformerModel base = TinyModels.gpt2(); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = SelectTesting.ids(m, base.vocabSize(), 2);
            PeftModel peft = PeftModel.wrap(base);
            DiffPruningAdapter a = (DiffPruningAdapter) peft.addAdapter(PeftModel.DEFAULT,
                    new DiffPruningConfig().targetModules("c_fc").l0Lambda(0.5));
            DiffPruningLayer layer = (DiffPruningLayer) a.layers().get("transformer.h.1.mlp.c_fc");
            Param w = layer.diff(PeftModel.DEFAULT);
            Param la = layer.logAlpha(PeftModel.DEFAULT);
            randomize(w, 1, 0, 0.2);
            randomize(la, 2, 0, 1.5);
            peft.model().train(false); // the deterministic gate: a smooth function of log_alpha away from the clamp
            Supplier<Double> loss = () -> (double) SelectTesting.causalLoss(SelectTesting.logits(peft, ids), ids)
                    .add(a.extraLoss(new TrainingHooks.TrainingStep(1, 1))).getFloat();
            float[] gw;
            float[] gla;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(SelectTesting.causalLoss(SelectTesting.logits(peft, ids), ids)
                        .add(a.extraLoss(new TrainingHooks.TrainingStep(1, 1))));
                gw = w.array().getGradient().toFloatArray();
                gla = la.array().getGradient().toFloatArray();
            }
            float[] zs = layer.gate(PeftModel.DEFAULT, false).toFloatArray();
            double worstW = 0;
            double worstA = 0;
            int checked = 0;
            for (int i = 0; i < 40 && checked < 6; i++) {
                worstW = Math.max(worstW, Math.abs(TinyModels.finiteDifference(w, i, 1e-2f, loss) - gw[i]));
                if (zs[i] > 0.02 && zs[i] < 0.98) { // inside the clamp, where z is differentiable
                    worstA = Math.max(worstA, Math.abs(TinyModels.finiteDifference(la, i, 1e-2f, loss) - gla[i]));
                    checked++;
                }
            }
            System.out.printf("DIFF_PRUNING gradients vs finite differences: diff_weight max|diff| = %.2e, log_alpha (%d"
                    + " entries) max|diff| = %.2e%n", worstW, checked, worstA);
            assertTrue(checked >= 3);
            assertTrue(worstW < 2e-3 && worstA < 2e-3, worstW + " " + worstA);
        }
    }

    @Test
    void trainsWithThePenaltySavesLoadsAndMerges(@TempDir Path tmp) throws Exception {
        Engine.getInstance().setRandomSeed(13);
        Path baseDir = tmp.resolve("base");
        try (TransformerModel m = TinyModels.gpt2()) {
            m.save(baseDir);
        }
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = SelectTesting.ids(m, base.vocabSize(), 4);
            PeftModel peft = PeftModel.wrap(base);
            NDArray baseLogits = SelectTesting.logits(peft, ids);
            DiffPruningAdapter a = (DiffPruningAdapter) peft.addAdapter(PeftModel.DEFAULT,
                    new DiffPruningConfig().targetModules("c_attn").l0Lambda(2.0));
            double density0 = a.expectedDensity().getFloat();
            double[] loss;
            try (AdamW adam = AdamW.builder().build()) {
                loss = SelectTesting.train(peft, ids, adam, 25, 0.05);
            }
            double density = a.expectedDensity().getFloat();
            System.out.printf("DIFF_PRUNING 25 AdamW steps: loss %.4f -> %.4f, expected density %.3f -> %.3f, open gates %.3f%n",
                    loss[0], loss[1], density0, density, a.openFraction());
            assertTrue(loss[1] < loss[0] - 0.1, "loss did not decrease");
            assertTrue(density < density0 - 0.02, "the L0 penalty did not close gates: " + density0 + " -> " + density);
            NDArray tuned = SelectTesting.logits(peft, ids);
            assertTrue(SelectTesting.diff(tuned, baseLogits) > 1e-3);
            try (AutoCloseable off = peft.disabled()) {
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(peft, ids), baseLogits));
            }
            peft.save(tmp.resolve("out"));
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("out/adapter_model.safetensors"))) {
                assertTrue(f.names().contains("base_model.model.transformer.h.0.attn.c_attn.diff_weight"), f.names().toString());
                assertTrue(f.names().contains("base_model.model.transformer.h.0.attn.c_attn.diff_log_alpha"), f.names().toString());
                assertEquals(4, f.names().size());
            }
            try (TransformerModel fresh = Models.load(baseDir)) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp.resolve("out"), PeftModel.DEFAULT, false);
                assertEquals(0.0, SelectTesting.diff(SelectTesting.logits(again, ids), tuned));
                again.merge(PeftModel.DEFAULT);
                double md = SelectTesting.diff(SelectTesting.logits(again, ids), tuned);
                System.out.printf("DIFF_PRUNING merged vs unmerged logits max|diff| = %.2e%n", md);
                assertTrue(md < 1e-4, "merged " + md);
            }
        }
    }
}
