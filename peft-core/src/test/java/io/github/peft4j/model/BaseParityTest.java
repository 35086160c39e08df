package io.github.peft4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.testing.Fixtures;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Base-model logits equal transformers' for every fixture case (bert_tokcls_lora: BertForTokenClassification, the
 * {@code classifier} on every position of the sequence output).
 */
class BaseParityTest {
    @ParameterizedTest
    @ValueSource(strings = {"llama_lora", "gpt2_lora", "bert_lora", "gpt2_ia3", "gpt2_prompt", "gpt2_prefix",
        "bert_tokcls_lora"})
    void baseLogitsMatchTransformers(String name) {
        try (TransformerModel model = Models.load(Fixtures.dir(name).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            NDArray ids = Fixtures.ids(m, name, "input_ids");
            NDArray mask = Fixtures.ids(m, name, "attention_mask");
            NDArray logits = model.forward(ModelInput.of(ids, mask)).logits();
            NDArray expected = Fixtures.logits(m, name, "logits.json", "base_logits");
            double diff = Fixtures.maxAbsDiff(logits, expected);
            System.out.printf("parity %s base max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": max |diff| " + diff);
            assertEquals(expected.getShape(), logits.getShape());
        }
    }
}
