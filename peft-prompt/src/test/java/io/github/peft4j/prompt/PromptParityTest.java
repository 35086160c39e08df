package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Adapter logits equal HF PEFT's for adapters made by HF PEFT, and the disabled scope gives the base logits.
 * Cases that are not (yet) in the fixture directory are skipped.
 */
class PromptParityTest {
    @ParameterizedTest
    @ValueSource(strings = {"gpt2_prompt", "gpt2_prefix", "bert_prompt", "llama_prompt_text", "llama_prefix"})
    void adapterLogitsMatchHfPeft(String name) throws Exception {
        Path dir = Fixtures.root().resolve(name);
        Assumptions.assumeTrue(Files.isDirectory(dir.resolve("adapter")), name + " fixture absent");
        try (TransformerModel model = Models.load(dir.resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(dir.resolve("adapter"), "default", false);
            NDArray ids = Fixtures.ids(m, name, "input_ids");
            NDArray mask = Fixtures.ids(m, name, "attention_mask");
            NDArray logits = peft.forward(ModelInput.of(ids, mask)).logits();
            NDArray expected = Fixtures.logits(m, name, "logits.json", "adapter_logits");
            assertEquals(expected.getShape(), logits.getShape(), name + " adapter logits shape");
            double diff = Fixtures.maxAbsDiff(logits, expected);
            System.out.printf("parity %s adapter max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": adapter max |diff| " + diff);

            try (AutoCloseable off = peft.disabled()) {
                NDArray base = peft.forward(ModelInput.of(ids, mask)).logits();
                NDArray expectedBase = Fixtures.logits(m, name, "logits.json", "base_logits");
                double baseDiff = Fixtures.maxAbsDiff(base, expectedBase);
                System.out.printf("parity %s disabled max|diff| = %.3g%n", name, baseDiff);
                assertTrue(baseDiff < 1e-4, name + ": disabled max |diff| " + baseDiff);
            }
            // and the adapter is back after the scope
            assertTrue(Fixtures.maxAbsDiff(peft.forward(ModelInput.of(ids, mask)).logits(), expected) < 1e-4);
        }
    }
}
