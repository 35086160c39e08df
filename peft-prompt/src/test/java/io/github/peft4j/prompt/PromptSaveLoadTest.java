package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Saving writes HF's config fields and exactly one tensor, and loading it back reproduces the logits. */
class PromptSaveLoadTest {
    @TempDir
    Path tmp;

    private static JsonNode config(Path dir) throws Exception {
        return new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
    }

    private static Shape savedShape(Path dir) {
        try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
            assertEquals(List.of("prompt_embeddings"), f.names());
            return f.info("prompt_embeddings").djlShape();
        }
    }

    /** Saves the adapter of a fresh model, reloads it into a fresh copy and compares logits. */
    private double roundTrip(java.util.function.IntFunction<TransformerModel> factory, PeftConfig config, Path dir) {
        try (TransformerModel a = factory.apply(7); TransformerModel b = factory.apply(7);
                NDManager m = NDManager.newBaseManager()) {
            NDArray ids = TestModels.batch(m, 3, 2, 6);
            PeftModel pa = PeftModel.wrap(a);
            pa.addAdapter("default", config);
            NDArray before = pa.forward(ModelInput.of(ids, null)).logits();
            pa.save(dir);
            PeftModel pb = PeftModel.wrap(b);
            pb.loadAdapter(dir, "default", false);
            NDArray after = pb.forward(ModelInput.of(ids, null)).logits();
            assertEquals(before.getShape(), after.getShape());
            // the base models are equal (same seed), so only the adapter could differ
            try (AutoCloseable off = pb.disabled()) {
                assertTrue(Fixtures.maxAbsDiff(pb.forward(ModelInput.of(ids, null)).logits(),
                        a.forward(ModelInput.of(ids, null)).logits()) == 0.0, "same base weights");
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            return Fixtures.maxAbsDiff(after, before);
        }
    }

    @Test
    void promptTuningRoundTrip() throws Exception {
        Path dir = tmp.resolve("prompt");
        double diff = roundTrip(TestModels::gpt2, new PromptTuningConfig().numVirtualTokens(5), dir);
        assertEquals(0.0, diff, "reloaded prompt-tuning logits");
        JsonNode c = config(dir);
        assertEquals("PROMPT_TUNING", c.get("peft_type").asText());
        assertEquals(5, c.get("num_virtual_tokens").asInt());
        assertEquals(32, c.get("token_dim").asInt());
        assertEquals(2, c.get("num_layers").asInt());
        assertEquals(4, c.get("num_attention_heads").asInt());
        assertEquals(1, c.get("num_transformer_submodules").asInt());
        assertEquals("CAUSAL_LM", c.get("task_type").asText());
        assertTrue(c.get("inference_mode").asBoolean());
        assertEquals("RANDOM", c.get("prompt_tuning_init").asText());
        assertTrue(c.has("prompt_tuning_init_text") && c.get("prompt_tuning_init_text").isNull());
        assertTrue(c.has("tokenizer_kwargs") && c.has("tokenizer_name_or_path"));
        assertFalse(c.has("init_token_ids"), "init_token_ids is Java-only");
        assertEquals(new Shape(5, 32), savedShape(dir));
    }

    @Test
    void prefixTuningRoundTripWithGqa() throws Exception {
        Path dir = tmp.resolve("prefix");
        double diff = roundTrip(TestModels::llama, new PrefixTuningConfig().numVirtualTokens(3), dir);
        assertEquals(0.0, diff, "reloaded prefix-tuning logits");
        JsonNode c = config(dir);
        assertEquals("PREFIX_TUNING", c.get("peft_type").asText());
        assertEquals(3, c.get("num_virtual_tokens").asInt());
        // HF's GQA convention: token_dim = kv_heads * head_dim = 2 * 8, num_attention_heads = kv_heads
        assertEquals(16, c.get("token_dim").asInt());
        assertEquals(2, c.get("num_attention_heads").asInt());
        assertEquals(16, c.get("encoder_hidden_size").asInt());
        assertEquals(2, c.get("num_layers").asInt());
        assertFalse(c.get("prefix_projection").asBoolean());
        assertEquals("CAUSAL_LM", c.get("task_type").asText());
        assertTrue(c.get("inference_mode").asBoolean());
        assertEquals(new Shape(3, 2 * 2 * 16), savedShape(dir));
    }

    @Test
    void prefixProjectionSavesEncoderOutputAndLoadsAsEmbedding() throws Exception {
        Path dir = tmp.resolve("projection");
        PrefixTuningConfig config = new PrefixTuningConfig().numVirtualTokens(4).prefixProjection(true).encoderHiddenSize(24);
        double diff = roundTrip(TestModels::gpt2, config, dir);
        assertTrue(diff < 1e-6, "reloaded projection prefix logits differ by " + diff);
        JsonNode c = config(dir);
        assertTrue(c.get("prefix_projection").asBoolean());
        assertEquals(24, c.get("encoder_hidden_size").asInt());
        assertEquals(32, c.get("token_dim").asInt());
        assertEquals(new Shape(4, 2 * 2 * 32), savedShape(dir));

        try (TransformerModel model = TestModels.gpt2(7)) {
            PeftModel peft = PeftModel.wrap(model);
            PrefixTuningAdapter a = (PrefixTuningAdapter) peft.addAdapter("fresh", new PrefixTuningConfig()
                    .numVirtualTokens(4).prefixProjection(true).encoderHiddenSize(24));
            assertTrue(a.hasProjection());
            assertEquals(List.of("prompt_encoder.fresh.embedding.weight", "prompt_encoder.fresh.transform.0.weight",
                    "prompt_encoder.fresh.transform.0.bias", "prompt_encoder.fresh.transform.2.weight",
                    "prompt_encoder.fresh.transform.2.bias"), List.copyOf(a.parameters().keySet()));
            long mlp = 4 * 32 + (24 * 32 + 24) + (128 * 24 + 128);
            assertEquals(mlp, peft.trainableParameters().values().stream().mapToLong(p -> p.numel()).sum());

            // loaded for training: the plain embedding of the saved output is what trains
            PrefixTuningAdapter loaded = (PrefixTuningAdapter) peft.loadAdapter(dir, "loaded", true);
            assertFalse(loaded.hasProjection());
            assertEquals(List.of("prompt_encoder.loaded.embedding.weight"), List.copyOf(loaded.parameters().keySet()));
            assertEquals(new Shape(4, 128), loaded.embedding().shape());
            assertTrue(loaded.embedding().isTrainable());
            assertEquals(4L * 128, peft.trainableParameters().values().stream().mapToLong(p -> p.numel()).sum());
        }
    }

    @Test
    void fixtureAdapterResavesIdentically() throws Exception {
        Path src = Fixtures.dir("gpt2_prompt").resolve("adapter");
        try (TransformerModel model = io.github.peft4j.model.Models.load(Fixtures.dir("gpt2_prompt").resolve("base"));
                NDManager m = NDManager.newBaseManager();
                SafeTensorsFile orig = SafeTensorsFile.open(src.resolve("adapter_model.safetensors"))) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(src, "default", false);
            Path out = tmp.resolve("resaved");
            peft.save(out);
            try (SafeTensorsFile again = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                assertEquals(0.0, Fixtures.maxAbsDiff(again.load("prompt_embeddings", m), orig.load("prompt_embeddings", m)));
            }
            JsonNode a = config(src);
            JsonNode b = config(out);
            for (String k : List.of("peft_type", "num_virtual_tokens", "token_dim", "num_layers", "num_attention_heads",
                    "num_transformer_submodules", "prompt_tuning_init", "task_type", "inference_mode")) {
                assertEquals(a.get(k), b.get(k), k);
            }
            assertTrue(Files.size(out.resolve("adapter_model.safetensors")) > 4 * 64 * 4);
        }
    }

    @Test
    void textInitAdapterReloadsWithoutIds() throws Exception {
        Path dir = tmp.resolve("text");
        PromptTuningConfig config = new PromptTuningConfig().numVirtualTokens(4).promptTuningInit("TEXT")
                .promptTuningInitText("tiny").tokenizerNameOrPath("tok").initTokenIds(7, 9);
        double diff = roundTrip(TestModels::gpt2, config, dir);
        assertEquals(0.0, diff, "reloaded TEXT-init logits");
        JsonNode c = config(dir);
        assertEquals("TEXT", c.get("prompt_tuning_init").asText());
        assertEquals("tiny", c.get("prompt_tuning_init_text").asText());
        assertEquals("tok", c.get("tokenizer_name_or_path").asText());
        assertFalse(c.has("init_token_ids"));
    }
}
