package io.github.peft4j.adapters.unipelt;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.adapters.bottleneck.AdapterHubCases;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * UniPELT, MAM, a union of every other prefix / LoRA option, and the NICE invertible adapters, made by AdapterHub
 * ({@code make_adapterhub_fixtures.py --new}): AdapterHub's directories load in peft4j, from the safetensors and from
 * the torch pickle form, with AdapterHub's logits.
 */
class UnionParityTest {
    @ParameterizedTest
    @ValueSource(strings = {"bert_unipelt", "bert_mam", "bert_union_custom", "bert_seq_bn_inv", "bert_double_seq_bn_inv",
        "gpt2_unipelt", "gpt2_mam", "gpt2_union_custom", "gpt2_seq_bn_inv", "llama_unipelt", "llama_mam",
        "llama_union_custom", "llama_seq_bn_inv"})
    void adapterHubFilesGiveAdapterHubsLogitsInBothForms(String name, @TempDir Path tmp) {
        JsonNode logits = AdapterHubCases.json(name, "logits.json");
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            float[] plain = AdapterHubCases.forward(base, m, name).toFloatArray();
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            PeftModel peft = PeftModel.wrap(base);
            for (String form : AdapterHubCases.FORMS) {
                peft.loadAdapter(AdapterHubCases.form(name, form, tmp), "u", false);
                double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
                double moves = Fixtures.maxAbsDiff(expected, m.create(plain, expected.getShape()));
                System.out.printf("parity adapterhub %s (%s) max|diff| = %.3g (the adapter moves logits by %.3g)%n", name,
                        form, diff, moves);
                assertTrue(diff < 1e-4, name + " " + form + ": max |diff| " + diff);
                assertEquals(logits.get("adapter_moves_logits_by").asDouble(), moves, 1e-4, "the fixture's base logits");
                assertTrue(moves > 1e-2, "the adapter must change the logits");
                try (AutoCloseable off = peft.disabled()) {
                    assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray(), "disabled");
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                peft.deleteAdapter("u");
                assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray(), "deleted");
            }
        }
    }
}
