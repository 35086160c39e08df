package io.github.peft4j.adapters;

import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import org.junit.jupiter.api.Test;

/**
 * IA3 on a 4-bit base (make_bnb_fixtures.py ia3): an HF PEFT IA3 adapter made on the transformers + bitsandbytes 4-bit
 * Llama gives HF's logits; merging it is refused, as HF PEFT's {@code ia3.bnb.Linear4bit} has no merge.
 */
class IA3FourBitTest {
    private static final String BASE = "../bnb/llama_nf4_dq";
    private static final String CASE = "../bnb/llama_nf4_dq_ia3";

    @Test
    void ia3OnA4bitBaseGivesHfLogits() {
        try (TransformerModel base = Models.load(Fixtures.dir(BASE).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(CASE).resolve("adapter"), PeftModel.DEFAULT, false);
            IA3Layer k = assertInstanceOf(IA3Layer.class, base.resolve("model.layers.0.self_attn.k_proj"));
            assertInstanceOf(Linear4bit.class, k.baseModule());
            NDArray logits = peft.forward(ModelInput.of(Fixtures.ids(m, BASE, "input_ids"),
                    Fixtures.ids(m, BASE, "attention_mask"))).logits();
            NDArray expected = Fixtures.logits(m, CASE, "logits.json", "adapter_logits");
            double d = Fixtures.maxAbsDiff(logits, expected);
            double vsBase = Fixtures.maxAbsDiff(expected, Fixtures.logits(m, BASE, "logits.json", "base_logits"));
            System.out.printf("ia3 on 4-bit llama: adapter logits max|diff| = %.3g (adapter vs base %.3g)%n", d, vsBase);
            assertTrue(d < 1e-4, "ia3 4-bit " + d);
            assertTrue(vsBase > 1e-3, "the adapter changes the logits");
            PeftException e = assertThrows(PeftException.class, () -> peft.merge(PeftModel.DEFAULT));
            assertTrue(e.getMessage().contains("Linear4bit"), e.getMessage());
        }
    }
}
