package io.github.peft4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.quant.FourBitType;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * bnb-4bit checkpoints written by transformers + bitsandbytes (make_bnb_fixtures.py) load with their tensors kept
 * packed, give transformers' logits, and quantise-on-load of the dense checkpoint they came from gives the same bytes.
 */
class Bnb4bitLoadingTest {
    static final String NF4 = "../bnb/llama_nf4_dq";
    static final String FP4 = "../bnb/llama_fp4_skip";
    static final String GPT2 = "../bnb/gpt2_nf4_dq";
    static final String BERT = "../bnb/bert_nf4_dq";
    static final String BERT_SKIP = "../bnb/bert_nf4_dq_skip";
    static final Path DENSE = Fixtures.dir("llama_lora").resolve("base");

    /** The dense checkpoint each bnb-4bit case was quantised from. */
    static Path denseOf(String name) {
        return Fixtures.dir(switch (name) {
            case GPT2 -> "gpt2_lora";
            case BERT, BERT_SKIP -> "bert_lora";
            default -> "llama_lora";
        }).resolve("base");
    }

    @ParameterizedTest
    @ValueSource(strings = {NF4, FP4, GPT2, BERT, BERT_SKIP})
    void logitsMatchTransformersWithBitsandbytes(String name) {
        try (TransformerModel model = Models.load(Fixtures.dir(name).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            NDArray logits = model.forward(ModelInput.of(Fixtures.ids(m, name, "input_ids"),
                    Fixtures.ids(m, name, "attention_mask"))).logits();
            NDArray expected = Fixtures.logits(m, name, "logits.json", "base_logits");
            double diff = Fixtures.maxAbsDiff(logits, expected);
            long fourBit = model.modules().values().stream().filter(x -> x instanceof Linear4bit).count();
            System.out.printf("bnb-4bit %s: %d Linear4bit layers, logits max|diff| = %.3g%n", name, fourBit, diff);
            assertEquals(Fixtures.json(name, "logits.json").get("linear4bit_modules").asLong(), fourBit);
            assertTrue(diff < 1e-4, name + ": max |diff| " + diff);
            if (name.equals(GPT2)) { // Conv1D layers become (out, in) 4-bit layers; the tied head stays the embedding
                Linear4bit c = assertInstanceOf(Linear4bit.class, model.resolve("transformer.h.0.attn.c_attn"));
                assertEquals(64, c.inFeatures());
                assertEquals(192, c.outFeatures());
                assertEquals(DataType.FLOAT32, model.parameters().get("transformer.wte.weight").array().getDataType());
            } else if (name.equals(BERT)) { // transformers' default skip list is empty for BERT: heads are 4-bit too
                assertInstanceOf(Linear4bit.class, model.resolve("classifier"));
                assertInstanceOf(Linear4bit.class, model.resolve("bert.pooler.dense"));
                assertEquals(DataType.FLOAT32,
                        model.parameters().get("bert.embeddings.word_embeddings.weight").array().getDataType());
            } else if (name.equals(BERT_SKIP)) { // skip ["pooler", "classifier"]: "pooler" does not match bert.pooler.dense
                assertInstanceOf(Linear.class, model.resolve("classifier"));
                assertInstanceOf(Linear4bit.class, model.resolve("bert.pooler.dense"));
            } else {
                assertInstanceOf(Linear.class, model.resolve("lm_head"));
                assertEquals(DataType.FLOAT32, model.parameters().get("model.embed_tokens.weight").array().getDataType());
            }
        }
    }

    @Test
    void fp16ComputeDequantisesIntoFp16() {
        try (TransformerModel f32 = Models.load(Fixtures.dir(NF4).resolve("base"));
                TransformerModel f16 = Models.load(Fixtures.dir(NF4).resolve("base"), Device.cpu(), DataType.FLOAT16, null);
                NDManager m = NDManager.newBaseManager()) {
            NDArray ids = Fixtures.ids(m, NF4, "input_ids");
            NDArray a = f32.forward(ModelInput.of(ids, null)).logits();
            NDArray b = f16.forward(ModelInput.of(ids, null)).logits();
            assertEquals(DataType.FLOAT16, b.getDataType());
            double d = Fixtures.maxAbsDiff(a, b.toType(DataType.FLOAT32, false));
            System.out.printf("bnb-4bit fp16 compute vs fp32: logits max|diff| = %.3g%n", d);
            assertTrue(d < 2e-2, "fp16 vs fp32 " + d);
        }
    }

    @Test
    void skipModulesStayDense() {
        try (TransformerModel model = Models.load(Fixtures.dir(FP4).resolve("base"))) {
            Module o = model.resolve("model.layers.1.self_attn.o_proj");
            assertInstanceOf(Linear.class, o);
            Linear4bit q = assertInstanceOf(Linear4bit.class, model.resolve("model.layers.1.self_attn.q_proj"));
            assertEquals(FourBitType.FP4, q.type());
            assertFalse(q.doubleQuant());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {NF4, FP4, GPT2, BERT, BERT_SKIP})
    void quantiseOnLoadGivesBitsandbytesTensors(String name) throws Exception {
        HfConfig quantised = HfConfig.read(Fixtures.dir(name).resolve("base"));
        Quantization q = Quantization.fromConfig(quantised);
        long compared = 0;
        long bytes = 0;
        long values = 0;
        Path dense = denseOf(name);
        try (TransformerModel model = Models.load(dense, HfConfig.read(dense), Device.cpu(), DataType.FLOAT32, null,
                null, q);
                SafeTensorsFile bnb = SafeTensorsFile.open(Fixtures.dir(name).resolve("base/model.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            Map<String, io.github.peft4j.nn.Param> params = model.parameters();
            for (String key : bnb.names()) {
                io.github.peft4j.nn.Param p = params.get(key);
                if (p == null) {
                    throw new AssertionError("quantise-on-load has no tensor '" + key + "'; it has " + params.keySet());
                }
                NDArray expected = bnb.load(key, m);
                assertEquals(expected.getDataType(), p.array().getDataType(), key);
                assertEquals(expected.getShape(), p.array().getShape(), key);
                if (expected.getDataType() == DataType.UINT8) {
                    assertArrayEquals(expected.toByteArray(), p.array().toByteArray(), key);
                } else {
                    assertArrayEquals(expected.toFloatArray(), p.array().toFloatArray(), 0f, key);
                }
                compared++;
            }
            assertEquals(bnb.names().size(), params.size(), "same tensors as the bnb checkpoint");
            for (Module mod : model.modules().values()) {
                if (mod instanceof Linear4bit l) {
                    bytes += l.storageBytes();
                    values += l.inFeatures() * l.outFeatures();
                }
            }
            assertEquals(q, Quantization.fromConfig(model.config()));
        }
        System.out.printf("quantise-on-load %s: %d tensors equal bnb's bit for bit; 4-bit layers hold %.4f bits per weight%n",
                name, compared, 8.0 * bytes / values);
    }

    @Test
    void aQuantisedModelSavesAsABnb4bitCheckpoint(@TempDir Path tmp) throws Exception {
        Path bnbDir = Fixtures.dir(NF4).resolve("base");
        try (TransformerModel model = Models.load(DENSE, HfConfig.read(DENSE), Device.cpu(), DataType.FLOAT32, null,
                null, Quantization.nf4());
                NDManager m = NDManager.newBaseManager()) {
            model.save(tmp.resolve("q"));
            try (SafeTensorsFile ours = SafeTensorsFile.open(tmp.resolve("q/model.safetensors"));
                    SafeTensorsFile bnb = SafeTensorsFile.open(bnbDir.resolve("model.safetensors"))) {
                assertEquals(new java.util.TreeSet<>(bnb.names()), new java.util.TreeSet<>(ours.names()));
                for (String k : bnb.names()) {
                    assertEquals(bnb.info(k).dtype(), ours.info(k).dtype(), k);
                    assertArrayEquals(bnb.load(k, m).toByteArray(), ours.load(k, m).toByteArray(), k);
                }
            }
            com.fasterxml.jackson.databind.JsonNode qc = HfConfig.read(tmp.resolve("q")).json().get("quantization_config");
            assertEquals(HfConfig.read(bnbDir).json().get("quantization_config"), qc);
            try (TransformerModel back = Models.load(tmp.resolve("q"))) {
                NDArray ids = Fixtures.ids(m, NF4, "input_ids");
                double d = Fixtures.maxAbsDiff(model.forward(ModelInput.of(ids, null)).logits(),
                        back.forward(ModelInput.of(ids, null)).logits());
                assertEquals(0.0, d, "reloaded 4-bit model");
            }
        }
    }

    @Test
    void badCheckpointsAndOptionsAreRefused() {
        Quantization fp4 = new Quantization(FourBitType.FP4, 64, false, null);
        PeftException e = assertThrows(PeftException.class, () -> Models.load(Fixtures.dir(NF4).resolve("base"),
                HfConfig.read(Fixtures.dir(NF4).resolve("base")), Device.cpu(), DataType.FLOAT32, null, null, fp4));
        assertTrue(e.getMessage().contains("already 4-bit quantised"), e.getMessage());
        // a packed checkpoint whose config lost its quantization_config
        HfConfig noQc = HfConfig.read(Fixtures.dir(NF4).resolve("base"));
        noQc.json().remove("quantization_config");
        e = assertThrows(PeftException.class, () -> Models.load(Fixtures.dir(NF4).resolve("base"), noQc, Device.cpu(),
                DataType.FLOAT32, null, null));
        assertTrue(e.getMessage().contains("model.layers.0.self_attn.q_proj.weight") && e.getMessage().contains("packed"),
                e.getMessage());
    }

    /** fp16 and bf16 checkpoints quantise from their values widened to fp32 (bitsandbytes quantises in fp32). */
    @Test
    void fp16AndBf16CheckpointsQuantiseOnLoad(@TempDir Path tmp) throws Exception {
        Path f16 = tmp.resolve("f16");
        java.nio.file.Files.createDirectories(f16);
        java.nio.file.Files.copy(DENSE.resolve("config.json"), f16.resolve("config.json"));
        try (SafeTensorsFile f = SafeTensorsFile.open(DENSE.resolve("model.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            Map<String, NDArray> half = new java.util.LinkedHashMap<>();
            for (String k : f.names()) {
                half.put(k, f.load(k, m, DataType.FLOAT32).toType(DataType.FLOAT16, false));
            }
            io.github.peft4j.io.SafeTensorsWriter.write(f16.resolve("model.safetensors"), half, Map.of("format", "pt"));
        }
        Path bf16 = tmp.resolve("bf16");
        Bf16Test.writeBf16Copy(DENSE, bf16);
        for (Path dir : List.of(f16, bf16)) {
            try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("model.safetensors"))) {
                assertEquals(dir == f16 ? io.github.peft4j.io.TensorDType.F16 : io.github.peft4j.io.TensorDType.BF16,
                        f.info("model.layers.0.mlp.down_proj.weight").dtype());
            }
            int layers = 0;
            try (TransformerModel dense = Models.load(dir);
                    TransformerModel q = Models.load(dir, HfConfig.read(dir), Device.cpu(), DataType.FLOAT32, null, null,
                            Quantization.nf4())) {
                for (Map.Entry<String, Module> e : q.modules().entrySet()) {
                    if (e.getValue() instanceof Linear4bit l) {
                        float[] w = ((Linear) dense.resolve(e.getKey())).weight().array().toFloatArray();
                        io.github.peft4j.nn.quant.FourBitWeights expected = io.github.peft4j.nn.quant.FourBitQuantizer
                                .quantize(w, new long[] {l.outFeatures(), l.inFeatures()}, FourBitType.NF4, 64, true);
                        io.github.peft4j.nn.quant.FourBitWeights got = l.toHost();
                        assertArrayEquals(expected.packed(), got.packed(), e.getKey());
                        assertArrayEquals(expected.absmax8(), got.absmax8(), e.getKey());
                        assertArrayEquals(expected.nestedAbsmax(), got.nestedAbsmax(), 0f, e.getKey());
                        String state = new String(l.localParameters().get(Linear4bit.quantStateKey(FourBitType.NF4)).array()
                                .toByteArray(), java.nio.charset.StandardCharsets.UTF_8);
                        assertTrue(state.contains("\"dtype\": \"float32\""), state); // the model's dtype, as transformers
                        layers++;
                    }
                }
            }
            assertEquals(14, layers, dir.toString());
        }
    }

    @Test
    void dequantizeGivesADenseModelWithTheSameLogits(@TempDir Path tmp) throws Exception {
        try (TransformerModel model = Models.load(Fixtures.dir(NF4).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            NDArray ids = Fixtures.ids(m, NF4, "input_ids");
            NDArray before = model.forward(ModelInput.of(ids, null)).logits();
            assertEquals(14, Quantization.dequantize(model));
            assertTrue(model.modules().values().stream().noneMatch(x -> x instanceof Linear4bit));
            assertInstanceOf(Linear.class, model.resolve("model.layers.0.self_attn.q_proj"));
            assertEquals(null, Quantization.fromConfig(model.config()));
            double d = Fixtures.maxAbsDiff(before, model.forward(ModelInput.of(ids, null)).logits());
            System.out.printf("dequantised bnb-4bit model vs 4-bit: logits max|diff| = %.3g%n", d);
            assertTrue(d < 1e-5, "dequantised " + d);
            model.save(tmp.resolve("dense"));
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("dense/model.safetensors"))) {
                assertEquals(io.github.peft4j.io.TensorDType.F32, f.info("model.layers.0.self_attn.q_proj.weight").dtype());
                assertFalse(f.names().stream().anyMatch(k -> k.contains("absmax")));
            }
        }
    }

    @Test
    void skipRuleIsTransformers() {
        Quantization q = Quantization.nf4();
        assertFalse(q.quantizes("lm_head"));
        assertTrue(q.quantizes("model.layers.0.self_attn.o_proj"));
        Quantization s = q.withSkipModules(List.of("o_proj", "model.layers.1"));
        assertFalse(s.quantizes("model.layers.0.self_attn.o_proj"));
        assertFalse(s.quantizes("model.layers.1.mlp.up_proj"));
        assertTrue(s.quantizes("model.layers.0.mlp.up_proj"));
        assertTrue(s.quantizes("lm_head")); // an explicit list replaces the default, as in transformers
    }
}
