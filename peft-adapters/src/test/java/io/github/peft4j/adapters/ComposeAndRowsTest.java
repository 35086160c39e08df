package io.github.peft4j.adapters;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Wrappers of two methods composed on one projection, and IA3 in mixed-adapter batches. */
class ComposeAndRowsTest {
    private static float[] logits(PeftModel peft, NDArray ids) {
        return peft.forward(ModelInput.of(ids, null)).logits().toFloatArray();
    }

    private static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    /**
     * IA3 then LoRA on the same q/v projections: LoRA wraps IA3's wrapper (base_layer.base_layer), both act, the
     * inner IA3 can merge, the outer LoRA refuses (merging it would change IA3's output), and deleting them in any
     * order gives the original modules back with bit-identical logits.
     */
    @Test
    void loraAndIa3ComposeOnOneProjection() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(base);
            NDArray ids = TinyModels.ids(m, 2, 6, 5);
            float[] plain = logits(peft, ids);
            peft.addAdapter("ia3", new IA3Config().targetModules("q_proj", "v_proj").feedforwardModules(new String[0])
                    .initIa3Weights(false));
            float[] ia3Only = logits(peft, ids);
            peft.addAdapter("lora", new LoraConfig().r(2).targetModules("q_proj", "v_proj"));
            assertTrue(base.parameters().containsKey("model.layers.0.self_attn.q_proj.base_layer.base_layer.weight"));
            peft.setActive("ia3", "lora");
            assertArrayEquals(ia3Only, logits(peft, ids), 0f, "LoRA with B = 0 over IA3 changes nothing");
            peft.deleteAdapter("lora");
            peft.addAdapter("lora", new LoraConfig().r(2).targetModules("q_proj", "v_proj").initLoraWeights(false));
            peft.setActive("lora");
            float[] loraOnly = logits(peft, ids);
            peft.setActive("ia3", "lora");
            float[] both = logits(peft, ids);
            assertTrue(maxDiff(both, ia3Only) > 1e-4 && maxDiff(both, loraOnly) > 1e-4, "both methods act");

            PeftException e = assertThrows(PeftException.class, () -> peft.merge("lora"));
            assertTrue(e.getMessage().contains("cannot be merged"), e.getMessage());
            peft.merge("ia3");
            assertTrue(maxDiff(both, logits(peft, ids)) < 1e-5, "inner IA3 merged: same output");
            peft.unmerge("ia3");
            assertTrue(maxDiff(both, logits(peft, ids)) < 1e-5);

            peft.deleteAdapter("ia3"); // the inner wrapper leaves the chain; LoRA stays on the original projection
            assertTrue(base.parameters().containsKey("model.layers.0.self_attn.q_proj.base_layer.weight"));
            peft.setActive("lora");
            // the IA3 merge/unmerge round trip (W * l / l) leaves the base weight within rounding of the original
            assertTrue(maxDiff(loraOnly, logits(peft, ids)) < 1e-5);
            peft.deleteAdapter("lora");
            assertTrue(base.parameters().containsKey("model.layers.0.self_attn.q_proj.weight"));
            assertTrue(maxDiff(plain, logits(peft, ids)) < 1e-5);
        }
    }

    /** IA3 rows in a mixed batch equal each row under its own adapter alone. */
    @Test
    void ia3RowsRunWithTheirOwnVectors() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.gpt2()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new IA3Config().initIa3Weights(false));
            peft.addAdapter("b", new IA3Config().targetModules("c_attn").feedforwardModules(new String[0]).initIa3Weights(false));
            NDArray ids = TinyModels.ids(m, 3, 5, 2);
            List<String> rows = List.of("b", "a", CallContext.BASE);
            float[] mixed = peft.forward(ModelInput.of(ids, null).withRowAdapters(rows)).logits().toFloatArray();
            int per = mixed.length / 3;
            for (int r = 0; r < 3; r++) {
                NDArray row = ids.get(r).expandDims(0);
                float[] alone;
                if (CallContext.BASE.equals(rows.get(r))) {
                    try (AutoCloseable off = peft.disabled()) {
                        alone = logits(peft, row);
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                } else {
                    peft.setActive(rows.get(r));
                    alone = logits(peft, row);
                }
                float[] got = java.util.Arrays.copyOfRange(mixed, r * per, (r + 1) * per);
                assertEquals(per, alone.length);
                assertTrue(maxDiff(alone, got) < 1e-5, "row " + r + ": " + maxDiff(alone, got));
            }
        }
    }

    /** BitFit trains biases in place, so it cannot run per row: a clear error while it is active. */
    @Test
    void bitFitIsRefusedInAMixedBatch() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.gpt2()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new IA3Config());
            peft.addAdapter("bias", new BitFitConfig());
            NDArray ids = TinyModels.ids(m, 2, 4, 2);
            PeftException e = assertThrows(PeftException.class,
                    () -> peft.forward(ModelInput.of(ids, null).withRowAdapters(List.of("a", "bias"))));
            assertTrue(e.getMessage().contains("BITFIT adapter 'bias' cannot run per row"), e.getMessage());
            PeftException e2 = assertThrows(PeftException.class, () -> peft.addAdapter("bias2", new BitFitConfig()));
            assertTrue(e2.getMessage().contains("already trained in place by BITFIT adapter 'bias'"), e2.getMessage());
        }
    }
}
