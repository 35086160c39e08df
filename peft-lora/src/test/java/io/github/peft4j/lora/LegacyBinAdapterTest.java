package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * HF PEFT's legacy {@code adapter_model.bin} (written by peft's {@code save_pretrained(safe_serialization=False)}
 * for the llama_lora fixture, see make_torch_bin_fixtures.py) loads through {@link PeftModel#loadAdapter} and
 * gives exactly the logits of the same adapter loaded from {@code adapter_model.safetensors}.
 */
class LegacyBinAdapterTest {
    static final String CASE = "llama_lora";
    static final Path LEGACY = Fixtures.root().resolveSibling("torch-bin").resolve("llama_lora_legacy");

    @TempDir
    Path tmp;

    @Test
    void legacyBinAdapterGivesTheSafetensorsLogitsExactly() {
        assertTrue(Files.isRegularFile(LEGACY.resolve("adapter_model.bin")), "fixture " + LEGACY);
        assertFalse(Files.exists(LEGACY.resolve("adapter_model.safetensors")), "the .bin must be what is read");
        Path dir = Fixtures.dir(CASE);
        try (TransformerModel a = Models.load(dir.resolve("base")); TransformerModel b = Models.load(dir.resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel fromSafetensors = PeftModel.wrap(a);
            fromSafetensors.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
            PeftModel fromBin = PeftModel.wrap(b);
            fromBin.loadAdapter(LEGACY, PeftModel.DEFAULT, false);
            NDArray expected = LoraParityTest.logits(fromSafetensors, m, CASE);
            NDArray actual = LoraParityTest.logits(fromBin, m, CASE);
            assertEquals(expected.getShape(), actual.getShape());
            double exact = Fixtures.maxAbsDiff(actual, expected);
            double hf = LoraParityTest.diff(actual, m, CASE, "logits.json", "adapter_logits");
            System.out.printf("legacy adapter_model.bin %s: max|diff| vs safetensors path = %.3g, vs HF = %.3g%n",
                    CASE, exact, hf);
            assertEquals(0.0, exact, "the .bin and .safetensors adapters must give identical logits");
            assertTrue(hf < 1e-4, "HF parity: " + hf);
        }
    }

    @Test
    void aDirectoryWithNeitherWeightsFileNamesBoth() throws Exception {
        Files.copy(LEGACY.resolve("adapter_config.json"), tmp.resolve("adapter_config.json"));
        try (TransformerModel base = Models.load(Fixtures.dir(CASE).resolve("base"))) {
            PeftModel peft = PeftModel.wrap(base);
            PeftException e = assertThrows(PeftException.class, () -> peft.loadAdapter(tmp, "x", false));
            assertTrue(e.getMessage().contains(": no adapter_model.safetensors (or legacy adapter_model.bin) next to "
                    + "adapter_config.json"), e.getMessage());
            assertTrue(peft.adapterNames().isEmpty());
        }
    }
}
