package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PrefixTuningConfig;
import io.github.peft4j.testing.TinyModels;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Methods of the three in-model kinds active on one model at once (spine v2): LoRA wraps projections, a bottleneck
 * adapter sits at the FFN/attention output sites, prefix tuning prepends keys and values. Each acts, each can be
 * switched off alone, and removing all gives the base model back bit for bit.
 */
class SeveralKindsActiveTest {
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

    @Test
    void loraPrefixAndBottleneckActTogether() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(base);
            NDArray ids = TinyModels.ids(m, 2, 6, 21);
            float[] plain = logits(peft, ids);
            peft.addAdapter("lora", new LoraConfig().r(4).targetModules("q_proj", "v_proj").initLoraWeights(false));
            float[] lora = logits(peft, ids);
            peft.addAdapter("prefix", new PrefixTuningConfig().numVirtualTokens(3));
            float[] prefix = logits(peft, ids);
            peft.addAdapter("bn", BottleneckConfig.seqBn());
            peft.setActive("lora", "prefix", "bn");
            float[] all = logits(peft, ids);
            assertEquals(plain.length, all.length, "prefix tuning keeps the causal-LM logits' length");
            for (String off : List.of("lora", "prefix", "bn")) {
                List<String> rest = new java.util.ArrayList<>(List.of("lora", "prefix", "bn"));
                rest.remove(off);
                peft.setActive(rest.toArray(new String[0]));
                double d = maxDiff(all, logits(peft, ids));
                System.out.printf("several kinds active: switching off %s changes the logits by %.3g%n", off, d);
                assertTrue(d > 1e-3, off + " does not act when the others are on");
            }
            assertTrue(maxDiff(lora, plain) > 1e-4 && maxDiff(prefix, plain) > 1e-4);
            // all three removed: the model is the base model again, bit for bit
            for (String n : List.of("bn", "prefix", "lora")) {
                peft.deleteAdapter(n);
            }
            assertArrayEquals(plain, logits(peft, ids), 0f);
            assertTrue(base.sites(io.github.peft4j.model.SiteRole.FFN_OUTPUT).stream().allMatch(s -> s.isEmpty()));
        }
    }
}
