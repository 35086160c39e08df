package io.github.peft4j.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** IA3 logits and merged weights equal HF PEFT's for the fixture cases (cases absent here are skipped). */
class IA3ParityTest {
    private static Path caseDir(String name) {
        Path dir = Fixtures.dir(name);
        Assumptions.assumeTrue(Files.isDirectory(dir.resolve("adapter")), "fixture " + name + " not present");
        return dir;
    }

    private static PeftModel load(TransformerModel base, Path dir) {
        PeftModel peft = PeftModel.wrap(base);
        peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
        return peft;
    }

    private static NDArray logits(PeftModel peft, NDManager m, String name) {
        return peft.forward(ModelInput.of(Fixtures.ids(m, name, "input_ids"), Fixtures.ids(m, name, "attention_mask")))
                .logits();
    }

    @ParameterizedTest
    @ValueSource(strings = {"gpt2_ia3", "llama_ia3"})
    void adapterLogitsMatchHf(String name) {
        Path dir = caseDir(name);
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = load(base, dir);
            NDArray expected = Fixtures.logits(m, name, "logits.json", "adapter_logits");
            NDArray baseLogits = Fixtures.logits(m, name, "logits.json", "base_logits");
            double diff = Fixtures.maxAbsDiff(logits(peft, m, name), expected);
            System.out.printf("parity %s adapter max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": max |diff| " + diff);
            // the fixture's vectors are not the identity, so the comparison is meaningful
            assertTrue(Fixtures.maxAbsDiff(baseLogits, expected) > 1e-3, "adapter logits equal base logits");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"gpt2_ia3", "llama_ia3"})
    void disabledGivesBaseLogits(String name) throws Exception {
        Path dir = caseDir(name);
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = load(base, dir);
            NDArray expected = Fixtures.logits(m, name, "logits.json", "base_logits");
            try (AutoCloseable off = peft.disabled()) {
                double diff = Fixtures.maxAbsDiff(logits(peft, m, name), expected);
                System.out.printf("parity %s disabled max|diff| = %.3g%n", name, diff);
                assertTrue(diff < 1e-4, name + ": max |diff| " + diff);
            }
            // merged, then disabled: the merge is divided out for the scope and folded in again after it
            peft.merge(PeftModel.DEFAULT);
            try (AutoCloseable off = peft.disabled()) {
                assertTrue(Fixtures.maxAbsDiff(logits(peft, m, name), expected) < 1e-4);
            }
            NDArray adapter = Fixtures.logits(m, name, "logits.json", "adapter_logits");
            assertTrue(Fixtures.maxAbsDiff(logits(peft, m, name), adapter) < 1e-4);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"gpt2_ia3", "llama_ia3"})
    void mergedLogitsAndWeightsMatchHf(String name) {
        Path dir = caseDir(name);
        Assumptions.assumeTrue(Files.isRegularFile(dir.resolve("merged_logits.json")), "no merged logits for " + name);
        try (TransformerModel base = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = load(base, dir);
            NDArray expected = Fixtures.logits(m, name, "merged_logits.json", "merged_logits");
            peft.merge(PeftModel.DEFAULT);
            double mergedDiff = Fixtures.maxAbsDiff(logits(peft, m, name), expected);
            System.out.printf("parity %s merged max|diff| = %.3g%n", name, mergedDiff);
            assertTrue(mergedDiff < 1e-4, name + ": merged max |diff| " + mergedDiff);

            TransformerModel plain = peft.mergeAndUnload();
            NDArray unloaded = plain.forward(ModelInput.of(Fixtures.ids(m, name, "input_ids"),
                    Fixtures.ids(m, name, "attention_mask"))).logits();
            assertTrue(Fixtures.maxAbsDiff(unloaded, expected) < 1e-4);
            if (Files.isDirectory(dir.resolve("merged"))) {
                try (TransformerModel hf = Models.load(dir.resolve("merged"))) {
                    Map<String, Param> ours = plain.parameters();
                    double worst = 0;
                    for (Map.Entry<String, Param> e : hf.parameters().entrySet()) {
                        Param p = ours.get(e.getKey());
                        assertTrue(p != null, "merged model lacks " + e.getKey());
                        worst = Math.max(worst, Fixtures.maxAbsDiff(p.array(), e.getValue().array()));
                    }
                    assertEquals(hf.parameters().keySet(), ours.keySet());
                    System.out.printf("parity %s merged weights max|diff| = %.3g%n", name, worst);
                    assertTrue(worst < 1e-5, name + ": merged weights max |diff| " + worst);
                }
            }
        }
    }
}
