package io.github.peft4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Loading model directories: sharded checkpoints, and errors that name the file, key or tensor. */
class ModelLoadingTest {
    @TempDir
    Path tmp;

    @Test
    void shardedCheckpointGivesTheSameLogits() throws Exception {
        Path src = Fixtures.dir("llama_lora").resolve("base");
        try (TransformerModel model = Models.load(src); NDManager m = NDManager.newBaseManager()) {
            Path dir = tmp.resolve("sharded");
            SafeTensorsWriter.writeSharded(dir, model.stateDict(), Map.of("format", "pt"), 100_000);
            Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
            assertTrue(Files.exists(dir.resolve("model.safetensors.index.json")));
            assertTrue(Files.list(dir).filter(p -> p.getFileName().toString().startsWith("model-")).count() >= 3);
            NDArray ids = Fixtures.ids(m, "llama_lora", "input_ids");
            try (TransformerModel sharded = Models.load(dir)) {
                assertEquals(0.0, Fixtures.maxAbsDiff(sharded.forward(ModelInput.of(ids, null)).logits(),
                        model.forward(ModelInput.of(ids, null)).logits()), 0.0);
            }
        }
    }

    @Test
    void errorsNameTheFileKeyOrTensor() throws Exception {
        Path src = Fixtures.dir("gpt2_lora").resolve("base");
        Path dir = tmp.resolve("m");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), Files.readString(src.resolve("config.json")).replace("\"gpt2\"", "\"t5\""));
        Files.copy(src.resolve("model.safetensors"), dir.resolve("model.safetensors"));
        PeftException e = assertThrows(PeftException.class, () -> Models.load(dir));
        assertTrue(e.getMessage().contains("model_type 't5' is not supported; supported: [bert, gpt2, llama, mistral, qwen2]"), e.getMessage());

        Files.writeString(dir.resolve("config.json"), Files.readString(src.resolve("config.json")).replace("\"n_embd\": 64", "\"n_embd\": 32"));
        e = assertThrows(PeftException.class, () -> Models.load(dir));
        assertTrue(e.getMessage().contains("tensor 'transformer.wte.weight' has shape [128, 64], the model's config needs (128, 32)"), e.getMessage());

        Files.copy(src.resolve("config.json"), dir.resolve("config.json"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> partial = new TreeMap<>();
            partial.put("transformer.wte.weight", m.zeros(new Shape(128, 64)));
            SafeTensorsWriter.write(dir.resolve("model.safetensors"), partial, Map.of());
        }
        e = assertThrows(PeftException.class, () -> Models.load(dir));
        assertTrue(e.getMessage().contains("checkpoint has no tensor 'transformer.wpe.weight'"), e.getMessage());

        Files.writeString(dir.resolve("config.json"), "{\"model_type\": ");
        e = assertThrows(PeftException.class, () -> Models.load(dir));
        assertTrue(e.getMessage().contains("config.json: malformed JSON"), e.getMessage());
        e = assertThrows(PeftException.class, () -> Models.load(tmp.resolve("none")));
        assertTrue(e.getMessage().contains("not a Hugging Face model directory (no config.json)"), e.getMessage());
    }

    @Test
    void encoderCheckpointLoadsUnderAClassifierWithAnInitialisedHead() throws Exception {
        // a bare BertModel checkpoint (no "bert." prefix, no classifier) loads into a sequence classifier
        Path src = Fixtures.dir("bert_lora").resolve("base");
        Path dir = tmp.resolve("encoder");
        try (TransformerModel full = Models.load(src)) {
            Map<String, NDArray> bare = new TreeMap<>();
            full.stateDict().forEach((k, v) -> {
                if (k.startsWith("bert.")) {
                    bare.put(k.substring(5), v);
                }
            });
            SafeTensorsWriter.write(dir.resolve("model.safetensors"), bare, Map.of("format", "pt"));
            Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
            try (TransformerModel loaded = Models.load(dir)) {
                assertEquals(TaskType.SEQ_CLS, loaded.task());
                assertEquals(0.0, Fixtures.maxAbsDiff(loaded.parameters().get("bert.pooler.dense.weight").array(),
                        full.parameters().get("bert.pooler.dense.weight").array()), 0.0);
                assertEquals(0.0, loaded.parameters().get("classifier.bias").array().abs().sum().getFloat(), 0.0);
            }
            try (TransformerModel encoder = Models.load(dir, ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32,
                    TaskType.FEATURE_EXTRACTION)) {
                assertEquals("BertModel", encoder.architecture());
                assertTrue(encoder.parameters().containsKey("embeddings.word_embeddings.weight"));
            }

            // a sentence-transformers-style export (no pooler either): the weight source lists every initialised
            // head tensor, which Models.load reports in one warning per load
            Path noPooler = tmp.resolve("no-pooler");
            bare.keySet().removeIf(k -> k.startsWith("pooler."));
            SafeTensorsWriter.write(noPooler.resolve("model.safetensors"), bare, Map.of("format", "pt"));
            Files.copy(src.resolve("config.json"), noPooler.resolve("config.json"));
            try (io.github.peft4j.io.Checkpoint ckpt = io.github.peft4j.io.Checkpoint.open(noPooler);
                    NDManager m = NDManager.newBaseManager()) {
                CheckpointWeights w = new CheckpointWeights(ckpt, noPooler.toString(), m,
                        ai.djl.ndarray.types.DataType.FLOAT32, "bert", 0.02f);
                try (TransformerModel model = new BertModel(HfConfig.read(noPooler), TaskType.SEQ_CLS, w, m,
                        ai.djl.ndarray.types.DataType.FLOAT32)) {
                    assertEquals(java.util.List.of("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                            "classifier.bias"), w.initialised());
                }
            }
        }
    }
}
