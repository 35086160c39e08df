package io.github.peft4j.peft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The adapter's task_type picks the head; head weights and the label count come from the adapter file. */
class AutoPeftModelTest {
    /** A bare BertModel without pooler, saved by transformers (the spam job's imported-MiniLM layout). */
    private static final Path ENCODER = Fixtures.root().resolveSibling("hf-peft-reverse").resolve("bert_encoder");

    @TempDir
    Path tmp;

    /** An adapter directory with a config naming the task and a file with the given tensors (seeded values). */
    private Path adapter(String name, String task, Map<String, Shape> tensors) throws IOException {
        Path dir = tmp.resolve(name);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("adapter_config.json"), task == null ? "{\"peft_type\":\"LORA\"}"
                : "{\"peft_type\":\"LORA\",\"task_type\":\"" + task + "\"}");
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> t = new LinkedHashMap<>();
            int seed = 1;
            for (Map.Entry<String, Shape> e : tensors.entrySet()) {
                float[] v = new float[(int) e.getValue().size()];
                for (int i = 0; i < v.length; i++) {
                    v[i] = (float) Math.sin(seed * 0.37 + i * 0.11);
                }
                seed++;
                t.put(e.getKey(), m.create(v, e.getValue()));
            }
            SafeTensorsWriter.write(dir.resolve("adapter_model.safetensors"), t, Map.of("format", "pt"));
        }
        return dir;
    }

    private static float[] weight(TransformerModel model, String name) {
        return model.parameters().get(name).array().toFloatArray();
    }

    @Test
    void bareEncoderTakesTheSequenceHeadWithLabelsAndWeightsFromTheAdapter() throws IOException {
        Path a = adapter("seq", "SEQ_CLS", Map.of("base_model.model.classifier.weight", new Shape(3, 64),
                "base_model.model.classifier.bias", new Shape(3), "base_model.model.bert.pooler.dense.weight",
                new Shape(64, 64), "base_model.model.bert.pooler.dense.bias", new Shape(64)));
        try (TransformerModel m = AutoPeftModel.loadBase(ENCODER, a, Device.cpu(), DataType.FLOAT32);
                NDManager nd = NDManager.newBaseManager();
                io.github.peft4j.io.SafeTensorsFile f = io.github.peft4j.io.SafeTensorsFile.open(
                        a.resolve("adapter_model.safetensors"))) {
            assertEquals(TaskType.SEQ_CLS, m.task());
            assertEquals("BertForSequenceClassification", m.architecture());
            assertEquals(3, m.config().numLabels());
            assertEquals(List.of("BertForSequenceClassification"), m.config().architectures());
            assertEquals(new Shape(3, 64), m.parameters().get("classifier.weight").shape());
            for (String k : List.of("classifier.weight", "classifier.bias", "bert.pooler.dense.weight")) {
                assertEquals(0.0, Fixtures.maxAbsDiff(nd.create(weight(m, k)),
                        f.load("base_model.model." + k, nd).flatten()), k);
            }
        }
    }

    @Test
    void promptAdapterKeysAndTokenClassification() throws IOException {
        Path a = adapter("tok", "TOKEN_CLS", Map.of("prompt_embeddings", new Shape(4, 64),
                "base_model.classifier.weight", new Shape(5, 64), "base_model.classifier.bias", new Shape(5)));
        try (TransformerModel m = AutoPeftModel.loadBase(ENCODER, a, Device.cpu(), DataType.FLOAT32)) {
            assertEquals(TaskType.TOKEN_CLS, m.task());
            assertEquals(5, m.config().numLabels());
            assertEquals(new Shape(5), m.parameters().get("classifier.bias").shape());
        }
    }

    @Test
    void withoutTaskTypeOrAdapterTheConfigDecides() throws IOException {
        Path a = adapter("none", null, Map.of("base_model.model.x.lora_A.weight", new Shape(2, 64)));
        try (TransformerModel m = AutoPeftModel.loadBase(ENCODER, a, Device.cpu(), DataType.FLOAT32)) {
            assertEquals(TaskType.FEATURE_EXTRACTION, m.task());
        }
        try (TransformerModel m = AutoPeftModel.loadBase(Fixtures.dir("bert_lora").resolve("base"), null, Device.cpu(),
                DataType.FLOAT32)) {
            assertEquals(TaskType.SEQ_CLS, m.task());
        }
    }

    @Test
    void impossibleHeadsAreOneLineErrors() throws IOException {
        Path noHead = adapter("nohead", "SEQ_CLS", Map.of("base_model.model.bert.encoder.layer.0.attention.self"
                + ".query.lora_A.weight", new Shape(2, 64)));
        PeftException e = assertThrows(PeftException.class,
                () -> AutoPeftModel.loadBase(ENCODER, noHead, Device.cpu(), DataType.FLOAT32));
        assertTrue(e.getMessage().contains(noHead.resolve("adapter_config.json").toString())
                && e.getMessage().contains("classifier") && e.getMessage().contains("modules_to_save"), e.getMessage());

        Path gpt2 = Fixtures.dir("gpt2_lora").resolve("base");
        PeftException g = assertThrows(PeftException.class,
                () -> AutoPeftModel.loadBase(gpt2, noHead, Device.cpu(), DataType.FLOAT32));
        assertTrue(g.getMessage().contains("SEQ_CLS") && g.getMessage().contains("gpt2")
                && g.getMessage().contains("CAUSAL_LM"), g.getMessage());

        // a classification checkpoint with 2 labels and an adapter classifier with 3: no head fits both
        Path three = adapter("three", "TOKEN_CLS", Map.of("base_model.model.classifier.weight", new Shape(3, 64),
                "base_model.model.classifier.bias", new Shape(3)));
        PeftException l = assertThrows(PeftException.class, () -> AutoPeftModel.loadBase(
                Fixtures.dir("bert_lora").resolve("base"), three, Device.cpu(), DataType.FLOAT32));
        assertTrue(l.getMessage().contains("3 labels") && l.getMessage().contains("has 2"), l.getMessage());

        // a head of the wrong width in the adapter names the tensor
        Path wide = adapter("wide", "SEQ_CLS", Map.of("base_model.model.classifier.weight", new Shape(2, 64),
                "base_model.model.classifier.bias", new Shape(2), "base_model.model.bert.pooler.dense.weight",
                new Shape(64, 32)));
        PeftException w = assertThrows(PeftException.class,
                () -> AutoPeftModel.loadBase(ENCODER, wide, Device.cpu(), DataType.FLOAT32));
        assertTrue(w.getMessage().contains("base_model.model.bert.pooler.dense.weight")
                && w.getMessage().contains("[64, 32]"), w.getMessage());
    }
}
