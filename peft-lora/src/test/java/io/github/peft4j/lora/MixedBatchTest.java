package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Mixed-adapter batches (HF PEFT's {@code adapter_names=}): every row runs with its own LoRA adapter (or the base
 * model) in one forward pass, at parity with HF PEFT 0.21 on the {@code *_mixed_batch} fixtures, and in greedy
 * generation equal to generating each row alone.
 */
class MixedBatchTest {
    private static final double TOL = 1e-4;

    /** Max |diff| over the positions whose mask is 1 (padding queries give implementation-defined values). */
    private static double maskedDiff(NDArray a, NDArray b, NDArray mask) {
        NDArray d = a.sub(b).abs();
        if (d.getShape().dimension() == 3) {
            d = d.mul(mask.toType(DataType.FLOAT32, false).expandDims(-1));
        }
        return d.max().getFloat();
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_mixed_batch", "bert_mixed_batch", "llama_embedding_mixed_batch"})
    void rowsRunWithTheirOwnAdapterAsHf(String name) {
        JsonNode meta = Fixtures.json(name, "logits.json");
        try (NDManager m = NDManager.newBaseManager();
                TransformerModel base = Models.load(Fixtures.dir(meta.get("base_case").asText()).resolve("base"))) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(name).resolve("a"), "a", false);
            peft.loadAdapter(Fixtures.dir(name).resolve("b"), "b", false);
            NDArray ids = Fixtures.ids(m, name, "input_ids");
            NDArray mask = Fixtures.ids(m, name, "attention_mask");
            ModelInput in = ModelInput.of(ids, mask);
            for (String single : List.of("a", "b")) {
                peft.setActive(single);
                double d = maskedDiff(peft.forward(in).logits(), Fixtures.logits(m, name, "logits.json", single + "_logits"), mask);
                assertTrue(d < TOL, name + " " + single + ": " + d);
            }
            peft.setActive("a"); // with row adapters the active set does not matter, as in HF
            for (JsonNode batch : meta.get("mixed_batches")) {
                List<String> rows = new ArrayList<>();
                batch.get("adapter_names").forEach(n -> rows.add(n.asText()));
                NDArray got = peft.forward(in.withRowAdapters(rows)).logits();
                NDArray expected = Fixtures.logits(m, name, "logits.json", batch.get("key").asText());
                assertEquals(expected.getShape(), got.getShape());
                double d = maskedDiff(got, expected, mask);
                System.out.printf("parity %s rows %s max|diff| = %.3g%n", name, rows, d);
                assertTrue(d < TOL, name + " " + rows + ": " + d);
            }
        }
    }

    @Test
    void rowAdaptersAreCheckedBeforeTheForward() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new LoraConfig().r(2).targetModules("q_proj").initLoraWeights(false));
            NDArray ids = TinyModels.ids(m, 2, 4, 1);
            PeftException e = assertThrows(PeftException.class,
                    () -> peft.forward(ModelInput.of(ids, null).withRowAdapters(List.of("a", "zz"))));
            assertTrue(e.getMessage().contains("no adapter named 'zz'"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> ModelInput.of(ids, null).withRowAdapters(List.of("a")));
            peft.merge("a");
            e = assertThrows(PeftException.class,
                    () -> peft.forward(ModelInput.of(ids, null).withRowAdapters(List.of("a", CallContext.BASE))));
            assertTrue(e.getMessage().contains("merged"), e.getMessage());
        }
    }

    /** Rows of one batch under LoRA a, LoRA b and the base model give what each row gives alone. */
    @Test
    void greedyGenerationWithRowAdaptersEqualsEachRowAlone() {
        try (TransformerModel base = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new LoraConfig().r(4).loraAlpha(32).targetModules("q_proj", "v_proj").initLoraWeights(false));
            peft.addAdapter("b", new LoraConfig().r(2).loraAlpha(32).targetModules("o_proj", "down_proj").initLoraWeights(false));
            long[][] ids = {{5, 9, 17, 33}, {0, 7, 64, 3}, {12, 12, 90, 4}};
            long[][] mask = {{1, 1, 1, 1}, {0, 1, 1, 1}, {1, 1, 1, 1}};
            List<String> rows = List.of("b", CallContext.BASE, "a");
            GenerationConfig g = GenerationConfig.greedy(8);
            GenerationResult mixed = Generator.of(peft).generate(ids, mask, g, CallContext.rowAdapters(rows));
            for (int r = 0; r < ids.length; r++) {
                long[][] one = {ids[r]};
                long[][] oneMask = {mask[r]};
                GenerationResult alone;
                if (CallContext.BASE.equals(rows.get(r))) {
                    try (AutoCloseable off = peft.disabled()) {
                        alone = Generator.of(peft).generate(one, oneMask, g);
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                } else {
                    peft.setActive(rows.get(r));
                    alone = Generator.of(peft).generate(one, oneMask, g);
                }
                assertArrayEquals(alone.tokens(0), mixed.tokens(r), "row " + r + " (" + rows.get(r) + ")");
            }
            // and the adapters really differ on these prompts, so the check is not vacuous
            peft.setActive("a");
            int[] underA = Generator.of(peft).generate(new long[][] {ids[0]}, new long[][] {mask[0]}, g).tokens(0);
            assertNotNull(underA);
            assertTrue(!java.util.Arrays.equals(underA, mixed.tokens(0)), "adapters a and b generate the same tokens");
        }
    }

    /** A mixed batch trains: each adapter receives gradients only from its own rows. */
    @Test
    void gradientsOfAMixedBatchReachOnlyEachRowsAdapter() {
        try (NDManager m = NDManager.newBaseManager(); TransformerModel base = TinyModels.bert(TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", new LoraConfig().r(2).targetModules("query", "value").initLoraWeights(false));
            peft.addAdapter("b", new LoraConfig().r(2).targetModules("query", "value").initLoraWeights(false));
            peft.setActive("a", "b"); // both trainable
            NDArray ids = TinyModels.ids(m, 2, 5, 9);
            try (ai.djl.training.GradientCollector gc = ai.djl.engine.Engine.getInstance().newGradientCollector()) {
                NDArray out = peft.forward(ModelInput.of(ids, null).withRowAdapters(List.of("a", CallContext.BASE))).logits();
                gc.backward(out.sum());
            }
            double a = 0;
            double b = 0;
            for (var e : peft.adapter("a").parameters().entrySet()) {
                a += e.getValue().array().getGradient().abs().sum().getFloat();
            }
            for (var e : peft.adapter("b").parameters().entrySet()) {
                NDArray g = e.getValue().array().getGradient();
                b += g.abs().sum().getFloat();
            }
            assertTrue(a > 0, "adapter a got no gradient from its row");
            assertEquals(0.0, b, 0.0, "adapter b has no row in the batch but got a gradient");
        }
    }
}
