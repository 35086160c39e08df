package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** TEXT init copies word embeddings of the ids, repeated or cut to the prompt length exactly as HF PEFT. */
class PromptTextInitTest {
    private static NDArray wordEmbeddings(TransformerModel model, NDManager m, long[] ids) {
        NDArray tmp = m.create(ids, new Shape(1, ids.length));
        return model.embed(tmp.duplicate()).reshape(ids.length, model.hiddenSize());
    }

    @Test
    void fitTokenIdsRepeatsOrCutsAsHf() {
        assertArrayEquals(new long[] {5, 6, 7, 5, 6, 7, 5}, PromptTuningAdapter.fitTokenIds(new long[] {5, 6, 7}, 7));
        assertArrayEquals(new long[] {5, 6}, PromptTuningAdapter.fitTokenIds(new long[] {5, 6, 7}, 2));
        assertArrayEquals(new long[] {5, 6, 7}, PromptTuningAdapter.fitTokenIds(new long[] {5, 6, 7}, 3));
        assertArrayEquals(new long[] {9, 9, 9}, PromptTuningAdapter.fitTokenIds(new long[] {9}, 3));
    }

    @Test
    void shorterIdListIsRepeated() {
        try (TransformerModel model = TestModels.gpt2(3); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            PromptTuningAdapter a = (PromptTuningAdapter) peft.addAdapter("default", new PromptTuningConfig()
                    .numVirtualTokens(7).promptTuningInit("TEXT").promptTuningInitText("abc").tokenizerNameOrPath("tok")
                    .initTokenIds(4, 11, 2));
            NDArray expected = wordEmbeddings(model, m, new long[] {4, 11, 2, 4, 11, 2, 4});
            assertEquals(new Shape(7, 32), a.embedding().shape());
            assertEquals(0.0, Fixtures.maxAbsDiff(a.embedding().array(), expected));
            assertTrue(a.embedding().isTrainable());
        }
    }

    @Test
    void longerIdListIsCut() {
        try (TransformerModel model = TestModels.gpt2(3); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            PromptTuningAdapter a = (PromptTuningAdapter) peft.addAdapter("default", new PromptTuningConfig()
                    .numVirtualTokens(3).promptTuningInit("TEXT").promptTuningInitText("five").tokenizerNameOrPath("tok")
                    .initTokenIds(8, 1, 30, 7, 12));
            assertEquals(0.0, Fixtures.maxAbsDiff(a.embedding().array(), wordEmbeddings(model, m, new long[] {8, 1, 30})));
        }
    }

    @Test
    void textInitReproducesTheHfFixturePrompt() {
        String name = "llama_prompt_text";
        Path dir = Fixtures.root().resolve(name);
        Assumptions.assumeTrue(Files.isDirectory(dir), name + " fixture absent");
        JsonNode meta = Fixtures.json(name, "meta.json");
        long[] ids = new long[meta.get("init_token_ids_source").size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = meta.get("init_token_ids_source").get(i).asLong();
        }
        int n = meta.get("adapter_config").get("num_virtual_tokens").asInt();
        try (TransformerModel model = Models.load(dir.resolve("base")); NDManager m = NDManager.newBaseManager();
                SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"))) {
            PeftModel peft = PeftModel.wrap(model);
            PromptTuningAdapter a = (PromptTuningAdapter) peft.addAdapter("default", new PromptTuningConfig()
                    .numVirtualTokens(n).promptTuningInit("TEXT").promptTuningInitText("fixture").initTokenIds(ids));
            double diff = Fixtures.maxAbsDiff(a.embedding().array(), f.load("prompt_embeddings", m));
            System.out.printf("parity %s TEXT init vs HF prompt max|diff| = %.3g%n", name, diff);
            assertEquals(0.0, diff);
        }
    }

    @Test
    void textInitWithoutIdsNamesTheKey() {
        try (TransformerModel model = TestModels.gpt2(3)) {
            PeftModel peft = PeftModel.wrap(model);
            PeftException e = assertThrows(PeftException.class, () -> peft.addAdapter("default",
                    new PromptTuningConfig().numVirtualTokens(4).promptTuningInit("TEXT").promptTuningInitText("hi")
                            .tokenizerNameOrPath("tok")));
            assertTrue(e.getMessage().contains("'init_token_ids'"), e.getMessage());
            assertEquals(0, peft.adapterNames().size());
            PeftException bad = assertThrows(PeftException.class, () -> peft.addAdapter("default",
                    new PromptTuningConfig().numVirtualTokens(4).promptTuningInit("TEXT").promptTuningInitText("hi")
                            .tokenizerNameOrPath("tok").initTokenIds(3, 50)));
            assertTrue(bad.getMessage().contains("50") && bad.getMessage().contains("vocabulary"), bad.getMessage());
        }
    }

    @Test
    void sampleVocabAndUnknownInitAreRejected() {
        PeftException e = assertThrows(PeftException.class,
                () -> new PromptTuningConfig().numVirtualTokens(4).promptTuningInit("SAMPLE_VOCAB").validate("cfg"));
        assertTrue(e.getMessage().contains("SAMPLE_VOCAB") && e.getMessage().contains("prompt_tuning_init"), e.getMessage());
        PeftException u = assertThrows(PeftException.class,
                () -> new PromptTuningConfig().numVirtualTokens(4).promptTuningInit("ZEROS").validate("cfg"));
        assertTrue(u.getMessage().contains("ZEROS"), u.getMessage());
        PeftException k = assertThrows(PeftException.class, () -> new PromptTuningConfig().numVirtualTokens(4)
                .tokenizerKwargs(java.util.Map.of("a", 1)).validate("cfg"));
        assertTrue(k.getMessage().contains("tokenizer_kwargs"), k.getMessage());
        PeftException z = assertThrows(PeftException.class,
                () -> new PromptTuningConfig().numVirtualTokens(0).validate("cfg"));
        assertTrue(z.getMessage().contains("num_virtual_tokens"), z.getMessage());
    }

    /**
     * HF PEFT refuses a TEXT config without tokenizer_name_or_path or prompt_tuning_init_text (its __post_init__,
     * also when loading): peft4j writes both, filling the tokenizer from the base's directory.
     */
    @Test
    void textConfigsCarryWhatHfValidates(@org.junit.jupiter.api.io.TempDir Path tmp) throws Exception {
        Path base = Fixtures.dir("llama_prompt_text").resolve("base");
        try (TransformerModel model = Models.load(base)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new PromptTuningConfig().numVirtualTokens(3).promptTuningInit("TEXT")
                    .promptTuningInitText("tiny").initTokenIds(5, 6));
            peft.save(tmp.resolve("dir"));
            JsonNode c = new com.fasterxml.jackson.databind.ObjectMapper().readTree(
                    tmp.resolve("dir/adapter_config.json").toFile());
            assertEquals(base.toString(), c.get("tokenizer_name_or_path").asText());
            assertEquals("tiny", c.get("prompt_tuning_init_text").asText());
            peft.deleteAdapter("default");
            peft.addAdapter("named", new PromptTuningConfig().numVirtualTokens(3).promptTuningInit("TEXT")
                    .promptTuningInitText("tiny").baseModelNameOrPath("org/tiny-llama").initTokenIds(5));
            assertEquals("org/tiny-llama",
                    ((PromptTuningConfig) peft.adapter("named").config()).tokenizerNameOrPath());
        }
        // an adapter written before the fix (TEXT, no tokenizer, no text) still loads in peft4j, and is re-saved valid
        Path old = tmp.resolve("old");
        Files.createDirectories(old);
        Files.copy(Fixtures.dir("llama_prompt_text").resolve("adapter/adapter_model.safetensors"),
                old.resolve("adapter_model.safetensors"));
        Files.writeString(old.resolve("adapter_config.json"), "{\"peft_type\":\"PROMPT_TUNING\",\"task_type\":"
                + "\"CAUSAL_LM\",\"num_virtual_tokens\":6,\"prompt_tuning_init\":\"TEXT\",\"tokenizer_name_or_path\""
                + ":null,\"inference_mode\":true}");
        try (TransformerModel model = Models.load(base)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(old, "default", false);
            assertEquals(base.toString(), ((PromptTuningConfig) peft.adapter("default").config()).tokenizerNameOrPath());
        }
        try (TransformerModel model = TestModels.gpt2(3)) {
            PeftModel peft = PeftModel.wrap(model);
            PeftException noTok = assertThrows(PeftException.class, () -> peft.addAdapter("default",
                    new PromptTuningConfig().numVirtualTokens(2).promptTuningInit("TEXT").promptTuningInitText("hi")
                            .initTokenIds(3)));
            assertTrue(noTok.getMessage().contains("'tokenizer_name_or_path'")
                    && noTok.getMessage().contains("not loaded from a directory"), noTok.getMessage());
            PeftException noText = assertThrows(PeftException.class, () -> peft.addAdapter("default",
                    new PromptTuningConfig().numVirtualTokens(2).promptTuningInit("TEXT").tokenizerNameOrPath("t")
                            .initTokenIds(3)));
            assertTrue(noText.getMessage().contains("'prompt_tuning_init_text'"), noText.getMessage());
            assertEquals(0, peft.adapterNames().size());
        }
    }
}
