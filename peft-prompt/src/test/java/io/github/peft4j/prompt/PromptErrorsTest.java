package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Adapters made for another model or with a wrong tensor fail with the key or tensor named; reports count right. */
class PromptErrorsTest {
    @TempDir
    Path tmp;

    private static void writeAdapter(Path dir, String configJson, Map<String, NDArray> tensors) throws Exception {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("adapter_config.json"), configJson);
        SafeTensorsWriter.write(dir.resolve("adapter_model.safetensors"), tensors, Map.of("format", "pt"));
    }

    @Test
    void tokenDimOfAnotherModelIsNamed() throws Exception {
        try (TransformerModel model = TestModels.gpt2(1); NDManager m = NDManager.newBaseManager()) {
            Path dir = tmp.resolve("wrong_dim");
            writeAdapter(dir, "{\"peft_type\":\"PROMPT_TUNING\",\"num_virtual_tokens\":4,\"token_dim\":48,"
                    + "\"task_type\":\"CAUSAL_LM\",\"inference_mode\":true}",
                    Map.of("prompt_embeddings", m.zeros(new Shape(4, 48), DataType.FLOAT32)));
            PeftModel peft = PeftModel.wrap(model);
            PeftException e = assertThrows(PeftException.class, () -> peft.loadAdapter(dir, "default", false));
            assertTrue(e.getMessage().contains("'token_dim'") && e.getMessage().contains("48"), e.getMessage());
            assertEquals(0, peft.adapterNames().size());
        }
    }

    @Test
    void wrongTensorShapeNamesTheTensor() throws Exception {
        try (TransformerModel model = TestModels.gpt2(1); NDManager m = NDManager.newBaseManager()) {
            Path dir = tmp.resolve("wrong_shape");
            writeAdapter(dir, "{\"peft_type\":\"PREFIX_TUNING\",\"num_virtual_tokens\":4,\"inference_mode\":true}",
                    Map.of("prompt_embeddings", m.zeros(new Shape(4, 100), DataType.FLOAT32)));
            PeftModel peft = PeftModel.wrap(model);
            PeftException e = assertThrows(PeftException.class, () -> peft.loadAdapter(dir, "default", false));
            assertTrue(e.getMessage().contains("'prompt_embeddings'") && e.getMessage().contains("(4, 128)")
                    && e.getMessage().contains("adapter_model.safetensors"), e.getMessage());
            assertEquals(0, peft.adapterNames().size());

            Path extra = tmp.resolve("extra");
            writeAdapter(extra, "{\"peft_type\":\"PROMPT_TUNING\",\"num_virtual_tokens\":2,\"inference_mode\":true}",
                    Map.of("prompt_embeddings", m.zeros(new Shape(2, 32), DataType.FLOAT32),
                            "base_model.model.h.0.attn.c_attn.lora_A.weight", m.zeros(new Shape(2, 32), DataType.FLOAT32)));
            PeftException x = assertThrows(PeftException.class, () -> peft.loadAdapter(extra, "default", false));
            assertTrue(x.getMessage().contains("lora_A"), x.getMessage());

            Path missing = tmp.resolve("missing");
            writeAdapter(missing, "{\"peft_type\":\"PROMPT_TUNING\",\"num_virtual_tokens\":2,\"inference_mode\":true}",
                    Map.of("embeddings", m.zeros(new Shape(2, 32), DataType.FLOAT32)));
            PeftException y = assertThrows(PeftException.class, () -> peft.loadAdapter(missing, "default", false));
            assertTrue(y.getMessage().contains("embeddings"), y.getMessage());
        }
    }

    @Test
    void trainableReportCountsThePrompt() {
        try (TransformerModel model = TestModels.gpt2(1)) {
            long base = model.numParameters();
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new PromptTuningConfig().numVirtualTokens(5));
            long prompt = 5 * 32;
            String expected = String.format(java.util.Locale.ROOT, "trainable params: %,d || all params: %,d || trainable%%: %.4f",
                    prompt, base + prompt, 100.0 * prompt / (base + prompt));
            assertEquals(expected, peft.trainableReport());
            assertEquals(prompt, peft.trainableParameters().get("prompt_encoder.default.embedding.weight").numel());
            peft.deleteAdapter("default");
            assertTrue(peft.trainableReport().startsWith("trainable params: 0 || all params: " + String.format("%,d", base)));
        }
    }

    @Test
    void prefixReportUsesKvWidth() {
        try (TransformerModel model = TestModels.llama(1)) {
            long base = model.numParameters();
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new PrefixTuningConfig().numVirtualTokens(3));
            long prefix = 3L * 2 * 2 * (2 * 8); // n x layers x (k, v) x kv_heads * head_dim
            assertEquals(prefix, peft.trainableParameters().values().stream().mapToLong(p -> p.numel()).sum());
            assertEquals(base + prefix, peft.allParameters().values().stream().mapToLong(p -> p.numel()).sum());
        }
    }

    @Test
    void configsRoundTripThroughJson() {
        PrefixTuningConfig c = new PrefixTuningConfig().numVirtualTokens(7).prefixProjection(true).encoderHiddenSize(16);
        String json = PeftMethods.toJson(c);
        assertTrue(json.contains("\"prefix_projection\" : true") && json.contains("\"encoder_hidden_size\" : 16"), json);
        PrefixTuningConfig back = (PrefixTuningConfig) PeftMethods.parse(json, "json");
        assertEquals(7, back.numVirtualTokens());
        assertTrue(back.prefixProjection());
        assertEquals(16, back.encoderHiddenSize());
        PromptTuningConfig p = (PromptTuningConfig) PeftMethods.parse(PeftMethods.toJson(new PromptTuningConfig()
                .numVirtualTokens(3).promptTuningInit("TEXT").promptTuningInitText("hello").initTokenIds(1, 2)), "json");
        assertEquals("TEXT", p.promptTuningInit());
        assertEquals("hello", p.promptTuningInitText());
        assertEquals(null, p.initTokenIds());
    }
}
