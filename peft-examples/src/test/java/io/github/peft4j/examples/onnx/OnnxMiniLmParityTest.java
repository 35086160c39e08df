package io.github.peft4j.examples.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.Peft4jCli;
import io.github.peft4j.model.BertModel;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.SentenceEmbeddings;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Imports the real all-MiniLM-L6-v2 ONNX export and proves the import: peft4j's mean-pooled sentence embeddings
 * equal ONNX Runtime's on the same file, for a padded batch of 20 sentences and for each sentence alone.
 */
class OnnxMiniLmParityTest {
    static final List<String> SENTENCES = List.of(
            "A man is playing a guitar.",
            "Someone plays the guitar on a stage.",
            "The stock market fell sharply on Monday.",
            "Hello!",
            "Parameter-efficient fine-tuning adapts large models cheaply.",
            "LoRA adds low-rank matrices to frozen weights.",
            "Il pleut des cordes à Paris aujourd'hui.",
            "Der schnelle braune Fuchs springt über den faulen Hund.",
            "CONGRATULATIONS!!! You have WON a $1,000,000 prize, click here now",
            "Can we move tomorrow's meeting to 3 pm?",
            "The mitochondria is the powerhouse of the cell.",
            "I can't believe it's not butter.",
            "e = mc^2",
            "The quick brown fox jumps over the lazy dog, then naps under the old oak tree for the rest of a long and "
                    + "sunny afternoon while the farmer repairs the fence.",
            "naïve café résumé",
            "1234567890",
            "What is the capital of France?",
            "Paris is the capital of France.",
            "unsubscribe from this mailing list",
            "Tokyo 東京 is large.");

    /** Sentences also run alone (the shortest, the longest, two more): forwards are slow on a loaded 2-core box. */
    static final int[] ALONE = {3, 13, 0, 8};

    @TempDir
    static Path tmp;
    static Path onnx;
    static Path modelDir;
    static ImportedBert imported;

    @BeforeAll
    static void importBundled() throws Exception {
        onnx = tmp.resolve("all-minilm-l6-v2.onnx");
        try (InputStream s = OnnxBertImporter.class.getResourceAsStream(OnnxBertImporter.BUNDLED_ONNX)) {
            Files.copy(s, onnx);
        }
        imported = OnnxBertImporter.read(onnx);
        modelDir = tmp.resolve("minilm");
        imported.save(modelDir, OnnxBertImporter.bundledTokenizer(), false);
    }

    @Test
    void configAndWeightsAreDerivedFromTheGraph() throws Exception {
        JsonNode c = new ObjectMapper().readTree(modelDir.resolve("config.json").toFile());
        assertEquals("bert", c.get("model_type").asText());
        assertEquals("BertModel", c.get("architectures").get(0).asText());
        assertEquals(6, c.get("num_hidden_layers").asInt());
        assertEquals(384, c.get("hidden_size").asInt());
        assertEquals(12, c.get("num_attention_heads").asInt());
        assertEquals(1536, c.get("intermediate_size").asInt());
        assertEquals(30522, c.get("vocab_size").asInt());
        assertEquals(512, c.get("max_position_embeddings").asInt());
        assertEquals(2, c.get("type_vocab_size").asInt());
        assertEquals(1e-12, c.get("layer_norm_eps").asDouble());
        assertEquals("gelu", c.get("hidden_act").asText());
        assertFalse(imported.hasPooler());
        assertEquals(List.of("embeddings.position_ids"), imported.skipped());
        long h = 384;
        long i = 1536;
        long perLayer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h;
        assertEquals(30522 * h + 512 * h + 2 * h + 2 * h + 6 * perLayer, imported.numParameters());
        assertEquals(5 + 6 * 16, imported.tensors().size());
        // the MatMul weight is stored [in, out]; the HF Linear layout is [out, in]
        assertArrayEquals(new long[] {1536, 384}, imported.tensors().get("encoder.layer.0.intermediate.dense.weight").shape());
        assertArrayEquals(new long[] {384, 1536}, imported.tensors().get("encoder.layer.5.output.dense.weight").shape());
        JsonNode tok = new ObjectMapper().readTree(modelDir.resolve("tokenizer.json").toFile());
        assertTrue(tok.get("padding").isNull(), "fixed padding removed");
        JsonNode tc = new ObjectMapper().readTree(modelDir.resolve("tokenizer_config.json").toFile());
        assertTrue(tc.get("do_lower_case").asBoolean());
        assertEquals(128, tc.get("model_max_length").asInt());
        try (var s = Files.list(tmp)) {
            assertEquals(List.of(), s.map(p -> p.getFileName().toString()).filter(f -> f.startsWith(".")).toList(),
                    "no temporary directory left beside the output");
        }
    }

    @Test
    void meanPooledEmbeddingsMatchOnnxRuntime() throws Exception {
        int n = SENTENCES.size();
        long[][] ids = new long[n][];
        long[][] types = new long[n][];
        int maxLen = 0;
        try (HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.newInstance(modelDir.resolve("tokenizer.json"))) {
            for (int s = 0; s < n; s++) {
                Encoding e = tokenizer.encode(SENTENCES.get(s));
                ids[s] = e.getIds();
                types[s] = e.getTypeIds();
                maxLen = Math.max(maxLen, ids[s].length);
            }
        }
        assertEquals(101, ids[0][0], "[CLS] first");
        assertEquals(102, ids[0][ids[0].length - 1], "[SEP] last");
        long[][] pIds = new long[n][maxLen];
        long[][] pMask = new long[n][maxLen];
        long[][] pTypes = new long[n][maxLen];
        for (int s = 0; s < n; s++) {
            for (int t = 0; t < ids[s].length; t++) {
                pIds[s][t] = ids[s][t];
                pMask[s][t] = 1;
                pTypes[s][t] = types[s][t];
            }
        }
        float[][] reference = onnxRuntimeEmbeddings(pIds, pMask, pTypes);

        try (TransformerModel model = Models.load(modelDir); NDManager m = NDManager.newBaseManager()) {
            assertTrue(model instanceof BertModel);
            assertEquals(TaskType.FEATURE_EXTRACTION, model.task());
            NDArray hidden = model.forward(new ModelInput(m.create(pIds), null, m.create(pMask), m.create(pTypes), null,
                    null, false)).hiddenStates();
            float[] batch = SentenceEmbeddings.meanPool(hidden, m.create(pMask)).toFloatArray();
            double batchDiff = 0;
            double aloneDiff = 0;
            for (int s = 0; s < n; s++) {
                for (int d = 0; d < 384; d++) {
                    batchDiff = Math.max(batchDiff, Math.abs(batch[s * 384 + d] - reference[s][d]));
                }
            }
            for (int s : ALONE) { // padding must not matter: a few sentences again without padding or mask
                ModelOutput alone = model.forward(new ModelInput(m.create(new long[][] {ids[s]}), null, null,
                        m.create(new long[][] {types[s]}), null, null, false));
                float[] one = SentenceEmbeddings.meanPool(alone.hiddenStates(), null).toFloatArray();
                for (int d = 0; d < 384; d++) {
                    aloneDiff = Math.max(aloneDiff, Math.abs(one[d] - reference[s][d]));
                }
            }
            System.out.printf("parity minilm-onnx max|diff| = %.3g (batch of %d padded to %d tokens), %.3g (%d sentences"
                    + " alone, unpadded)%n", batchDiff, n, maxLen, aloneDiff, ALONE.length);
            assertTrue(batchDiff < 1e-4, "batch max|diff| " + batchDiff);
            assertTrue(aloneDiff < 1e-4, "unpadded max|diff| " + aloneDiff);

            // the embeddings mean something: paraphrases are closer than unrelated sentences
            float[] unit = SentenceEmbeddings.normalize(m.create(batch, new Shape(n, 384))).toFloatArray();
            double guitar = dot(unit, 0, 1);
            double unrelated = dot(unit, 0, 2);
            double capital = dot(unit, 16, 17);
            assertTrue(guitar > unrelated + 0.3 && capital > unrelated + 0.3,
                    "cos(guitar paraphrase) " + guitar + ", cos(capital q/a) " + capital + ", cos(unrelated) " + unrelated);
        }
    }

    private static double dot(float[] unit, int a, int b) {
        double s = 0;
        for (int d = 0; d < 384; d++) {
            s += unit[a * 384 + d] * unit[b * 384 + d];
        }
        return s;
    }

    /** ONNX Runtime on the original file; the mean pooling written out in plain Java, independently of peft4j. */
    private static float[][] onnxRuntimeEmbeddings(long[][] ids, long[][] mask, long[][] types) throws Exception {
        OrtEnvironment env = OrtEnvironment.getEnvironment();
        try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions();
                OrtSession session = env.createSession(onnx.toString(), opts);
                OnnxTensor tIds = OnnxTensor.createTensor(env, ids);
                OnnxTensor tMask = OnnxTensor.createTensor(env, mask);
                OnnxTensor tTypes = OnnxTensor.createTensor(env, types)) {
            assertEquals(List.of("input_ids", "attention_mask", "token_type_ids"), List.copyOf(session.getInputNames()));
            try (OrtSession.Result r = session.run(Map.of("input_ids", tIds, "attention_mask", tMask, "token_type_ids", tTypes))) {
                float[][][] last = (float[][][]) r.get("last_hidden_state").orElseThrow().getValue();
                float[][] out = new float[ids.length][384];
                for (int s = 0; s < ids.length; s++) {
                    double count = 0;
                    double[] sum = new double[384];
                    for (int t = 0; t < ids[s].length; t++) {
                        if (mask[s][t] == 1) {
                            count++;
                            for (int d = 0; d < 384; d++) {
                                sum[d] += last[s][t][d];
                            }
                        }
                    }
                    for (int d = 0; d < 384; d++) {
                        out[s][d] = (float) (sum[d] / count);
                    }
                }
                return out;
            }
        }
    }

    @Test
    void loadsForSequenceClassificationWithAnInitialisedHead() {
        try (TransformerModel features = Models.load(modelDir);
                TransformerModel cls = Models.load(modelDir, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS);
                NDManager m = NDManager.newBaseManager()) {
            assertEquals("BertForSequenceClassification", cls.architecture());
            long[][] ids = {{101, 7592, 2088, 102}, {101, 2054, 2003, 102}};
            ModelInput in = new ModelInput(m.create(ids), null, null, null, null, null, false);
            ModelOutput a = features.forward(in);
            ModelOutput b = cls.forward(in);
            assertNull(a.logits());
            assertEquals(new Shape(2, 2), b.logits().getShape());
            // the same pretrained encoder under bert.*, the new head on top
            assertTrue(a.hiddenStates().sub(b.hiddenStates()).abs().max().getFloat() == 0f);
            Map<String, NDArray> state = cls.stateDict();
            assertEquals(new Shape(2, 384), state.get("classifier.weight").getShape());
            assertEquals(0f, state.get("classifier.bias").abs().sum().getFloat());
            float std = state.get("classifier.weight").pow(2).mean().sqrt().getFloat();
            assertTrue(std > 0.01f && std < 0.03f, "classifier initialised with std 0.02, got " + std);
            assertTrue(state.containsKey("bert.pooler.dense.weight"), "pooler initialised as in transformers");
            assertTrue(Float.isFinite(b.logits().abs().max().getFloat()));
        }
    }

    @Test
    void cliImportsAndRefusesToOverwrite() throws Exception {
        Path out = tmp.resolve("cli");
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        ByteArrayOutputStream e = new ByteArrayOutputStream();
        String[] args = {"import-onnx", "--output", out.toString()}; // the bundled model, from the classpath
        assertEquals(0, Peft4jCli.run(args, new PrintStream(o, true), new PrintStream(e, true)), e.toString());
        assertTrue(o.toString().contains("6 layers, hidden 384, 12 heads, intermediate 1536, vocab 30522, gelu, eps 1.0E-12,"
                + " 22,565,376 parameters (no pooler)"), o.toString());
        assertTrue(Files.exists(out.resolve("tokenizer.json")) && Files.exists(out.resolve("tokenizer_config.json")));
        assertArrayEquals(Files.readAllBytes(modelDir.resolve("model.safetensors")), Files.readAllBytes(out.resolve("model.safetensors")),
                "file and classpath imports write the same weights");
        assertEquals(2, Peft4jCli.run(args, new PrintStream(o, true), new PrintStream(e, true)));
        assertTrue(e.toString().contains("--output " + out + " is not empty"), e.toString());
        PeftException refused = assertThrows(PeftException.class, () -> imported.save(out, null, false));
        assertTrue(refused.getMessage().contains("is not empty"), refused.getMessage());
        imported.save(out, null, true); // replaces the whole directory: the old tokenizer goes too
        assertFalse(Files.exists(out.resolve("tokenizer.json")));
        assertArrayEquals(Files.readAllBytes(modelDir.resolve("model.safetensors")), Files.readAllBytes(out.resolve("model.safetensors")));
        Files.writeString(tmp.resolve("a-file"), "x");
        assertThrows(PeftException.class, () -> imported.save(tmp.resolve("a-file"), null, true));
    }
}
