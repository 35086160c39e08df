package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * HF's {@code set_scale} / {@code scale_layer} / {@code unscale_layer} on LoRA and DoRA layers, and a LoRA, a DoRA and
 * an AdaLoRA adapter active together, against HF's PeftMixedModel (fixture {@code llama_set_scale_mixed}, made by
 * {@code make_set_scale_fixtures.py}).
 */
class LoraScaleParityTest {
    private static final String CASE = "llama_set_scale_mixed";
    private static final double TOL = 1e-4;

    private static PeftModel load(TransformerModel base) {
        PeftModel peft = PeftModel.wrap(base);
        Path dir = Fixtures.dir(CASE);
        for (String n : new String[] {"lora", "dora", "ada"}) {
            peft.loadAdapter(dir.resolve(n), n, false);
        }
        return peft;
    }

    @Test
    void setScaleAndSeveralVariantsActiveGiveHfLogits() {
        Path base = Fixtures.dir(Fixtures.json(CASE, "logits.json").get("base_case").asText()).resolve("base");
        try (TransformerModel model = Models.load(base); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = load(model);
            LoraAdapter lora = (LoraAdapter) peft.adapter("lora");
            LoraAdapter dora = (LoraAdapter) peft.adapter("dora");
            Map<String, Double> d = new LinkedHashMap<>();
            peft.setActive("lora");
            d.put("lora_logits", diff(peft, m, "lora_logits"));
            lora.setScale(0.5);
            d.put("lora_scaled_logits", diff(peft, m, "lora_scaled_logits"));
            peft.setActive("dora");
            dora.setScale(2.0);
            d.put("dora_scaled_logits", diff(peft, m, "dora_scaled_logits"));
            peft.setActive("lora", "dora", "ada");
            lora.setScale(1.0);
            dora.setScale(1.0);
            d.put("all_logits", diff(peft, m, "all_logits"));
            lora.setScale(0.5);
            dora.setScale(2.0);
            d.put("all_scaled_logits", diff(peft, m, "all_scaled_logits"));
            assertEquals(4, Scalable.scaleActive(peft, 3.0), "q_proj and v_proj of two layers");
            d.put("scale_layer_logits", diff(peft, m, "scale_layer_logits"));
            LoraLayer q = (LoraLayer) model.resolve("model.layers.0.self_attn.q_proj");
            assertEquals(1.5 * 8 / 4, q.scaling("lora"), 1e-12);
            assertEquals(6.0 * 4 / 2, q.scaling("dora"), 1e-12);
            Scalable.unscaleActive(peft, null);
            d.put("unscale_layer_logits", diff(peft, m, "unscale_layer_logits"));
            assertEquals(2.0, q.scaling("lora"), 0);
            d.forEach((k, v) -> System.out.printf("parity %s %s max|diff| = %.3g%n", CASE, k, v));
            d.forEach((k, v) -> assertTrue(v < TOL, k + ": " + v));
        }
    }

    private static double diff(PeftModel peft, NDManager m, String key) {
        return LoraParityTest.diff(LoraParityTest.logits(peft, m, CASE), m, CASE, "logits.json", key);
    }

    /**
     * Merging uses the scale set; a merged adapter's scale cannot change (HF would change it and unmerge the new
     * scale's update); scale_layer and unscale_layer act on the active adapters only.
     */
    @Test
    void mergeUsesTheScaleAndAMergedScaleIsFixed() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            LoraAdapter a = (LoraAdapter) peft.addAdapter("a", new LoraConfig().r(2).loraAlpha(4).initLoraWeights(false)
                    .useDora(true).targetModules("q_proj", "embed_tokens"));
            LoraAdapter b = (LoraAdapter) peft.addAdapter("b", new LoraConfig().r(2).loraAlpha(2).initLoraWeights(false)
                    .targetModules("q_proj"));
            NDArray ids = TinyModels.ids(m, 2, 5, 1);
            peft.setActive("a");
            a.setScale(0.3);
            NDArray scaled = peft.forward(ModelInput.of(ids, null)).logits();
            peft.merge("a");
            double merged = Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), scaled);
            PeftException e = assertThrows(PeftException.class, () -> a.setScale(1.0));
            assertTrue(e.getMessage().contains("'a' is merged into the base weights: unmerge it before changing its scale"),
                    e.getMessage());
            assertThrows(PeftException.class, () -> Scalable.scaleActive(peft, 2.0));
            peft.unmerge("a");
            LoraLayer q = (LoraLayer) model.resolve("model.layers.0.self_attn.q_proj");
            Scalable.scaleActive(peft, 2.0); // only "a" is active
            assertEquals(0.6 * 2, q.scaling("a"), 1e-12);
            assertEquals(1.0, q.scaling("b"), 0);
            Scalable.unscaleActive(peft, 4.0);
            assertEquals(0.3, q.scaling("a"), 1e-12);
            a.setScale(1.0);
            LoraEmbeddingLayer emb = (LoraEmbeddingLayer) model.resolve("model.embed_tokens");
            assertEquals(2.0, emb.scaling("a"), 0);
            b.setScale(0.0);
            peft.setActive("b");
            NDArray none;
            try (AutoCloseable off = peft.disabled()) {
                none = peft.forward(ModelInput.of(ids, null)).logits();
            } catch (Exception x) {
                throw new IllegalStateException(x);
            }
            assertEquals(0.0, Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, null)).logits(), none), 1e-6, "scale 0: the base model");
            System.out.printf("lora set_scale: merged at scale 0.3 vs unmerged max|diff| = %.3g%n", merged);
            assertTrue(merged < 1e-4, "merged with the scale set: " + merged);
        }
    }
}
