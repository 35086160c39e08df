package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.adapters.IA3Config;
import io.github.peft4j.lora.LoraAdapter;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import org.junit.jupiter.api.Test;

/**
 * A LoRA, a DoRA and an IA3 adapter active at once, scales set. HF's PeftMixedModel does not take IA3 (the LoRA +
 * DoRA + AdaLoRA combination is checked against HF in {@code LoraScaleParityTest}), so this check is Java-side: IA3
 * on modules of its own (k_proj scaled at the output, down_proj at the input) composes exactly, i.e. all three active
 * equal LoRA + DoRA active on the model whose IA3 was merged into the base weights.
 */
class LoraVariantsWithIa3Test {
    @Test
    void loraDoraAndIa3ActiveTogetherEqualLoraAndDoraOnTheIa3MergedModel() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(21);
            LoraAdapter lora = (LoraAdapter) peft.addAdapter("lora", new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false)
                    .targetModules("q_proj", "v_proj"));
            LoraAdapter dora = (LoraAdapter) peft.addAdapter("dora", new LoraConfig().r(2).loraAlpha(4).initLoraWeights(false)
                    .useDora(true).targetModules("q_proj", "v_proj"));
            IA3Config ia3 = new IA3Config().initIa3Weights(false).feedforwardModules("down_proj");
            ia3.targetModules("k_proj", "down_proj");
            peft.addAdapter("ia3", ia3);
            lora.setScale(0.5);
            dora.setScale(1.5);
            NDArray ids = TinyModels.ids(m, 2, 6, 2);
            peft.setActive("lora", "dora", "ia3");
            NDArray all = peft.forward(ModelInput.of(ids, null)).logits();
            peft.setActive("lora", "dora");
            NDArray without = peft.forward(ModelInput.of(ids, null)).logits();
            peft.setActive("ia3");
            peft.merge("ia3");
            peft.setActive("ia3", "lora", "dora");
            NDArray composed = peft.forward(ModelInput.of(ids, null)).logits();
            double d = Fixtures.maxAbsDiff(all, composed);
            double ia3Effect = Fixtures.maxAbsDiff(all, without);
            System.out.printf("LoRA + DoRA + IA3 active vs LoRA + DoRA on the IA3-merged model max|diff| = %.3g (IA3's"
                    + " effect %.3g)%n", d, ia3Effect);
            assertTrue(ia3Effect > 1e-2, "IA3 acts: " + ia3Effect);
            assertTrue(d < 1e-4, "composition: " + d);
        }
    }
}
