package io.github.peft4j.lora.qlora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.lora.LoraLayer;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import io.github.peft4j.io.SafeTensorsFile;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * QLoRA: LoRA over 4-bit ({@link Linear4bit}) projections. HF PEFT adapters made on transformers + bitsandbytes
 * 4-bit models (make_bnb_fixtures.py) give HF's logits; gradients of A and B through the 4-bit base match finite
 * differences; merging into a 4-bit base dequantises, merges and requantises as HF PEFT's {@code bnb.Linear4bit.merge}
 * and gives HF's merged logits; DoRA on a 4-bit base (norm of the dequantised weight), 4-bit GPT-2 and BERT too.
 */
class QLoraTest {
    private static final double TOL = 1e-4;
    private static final String Q = "model.layers.0.self_attn.q_proj";

    private static NDArray logits(PeftModel peft, NDManager m, String name) {
        return peft.forward(ModelInput.of(Fixtures.ids(m, name, "input_ids"), Fixtures.ids(m, name, "attention_mask")))
                .logits();
    }

    @ParameterizedTest
    @ValueSource(strings = {"../bnb/llama_nf4_dq", "../bnb/llama_fp4_skip"})
    void hfPeftAdapterOnABnb4bitModelGivesHfLogits(String name) throws Exception {
        try (TransformerModel base = Models.load(Fixtures.dir(name).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(name).resolve("adapter"), "default", false);
            // HF PEFT's print_trainable_parameters on the same 4-bit model (a packed weight counts two values a byte)
            assertEquals("trainable params: 0 || all params: 93,760 || trainable%: 0.0000", peft.trainableReport());
            LoraLayer q = assertInstanceOf(LoraLayer.class, base.resolve(Q));
            assertInstanceOf(Linear4bit.class, q.baseModule());
            double d = Fixtures.maxAbsDiff(logits(peft, m, name), Fixtures.logits(m, name, "logits.json", "adapter_logits"));
            System.out.printf("qlora %s adapter logits max|diff| = %.3g%n", name, d);
            assertTrue(d < TOL, name + " adapter: " + d);
            try (AutoCloseable off = peft.disabled()) {
                double b = Fixtures.maxAbsDiff(logits(peft, m, name), Fixtures.logits(m, name, "logits.json", "base_logits"));
                assertTrue(b < TOL, name + " disabled: " + b);
            }
        }
    }

    /** HF's merged logits of an adapter on a 4-bit base (make_bnb_fixtures.py merge / dora / gpt2 / bert). */
    private static NDArray hfMerged(NDManager m, String adapterCase) {
        return adapterCase.equals(NF4)
                ? Fixtures.logits(m, NF4, "merged_logits.json", "merged_logits")
                : Fixtures.logits(m, adapterCase, "logits.json", "merged_logits");
    }

    private static final String NF4 = "../bnb/llama_nf4_dq";

    @ParameterizedTest
    @ValueSource(strings = {NF4, "../bnb/llama_nf4_dq_dora", "../bnb/gpt2_nf4_dq", "../bnb/bert_nf4_dq_skip"})
    void mergingIntoA4bitBaseRequantisesAsHf(String adapterCase) throws Exception {
        String baseCase = adapterCase.contains("llama") ? NF4 : adapterCase;
        try (TransformerModel base = Models.load(Fixtures.dir(baseCase).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(adapterCase).resolve("adapter"), "default", false);
            double a = Fixtures.maxAbsDiff(logits(peft, m, baseCase),
                    Fixtures.logits(m, adapterCase, "logits.json", "adapter_logits"));
            assertTrue(a < TOL, adapterCase + " adapter: " + a);
            long fourBit = base.modules().values().stream().filter(x -> x instanceof Linear4bit).count();
            TransformerModel merged = peft.mergeAndUnload();
            assertEquals(fourBit, merged.modules().values().stream().filter(x -> x instanceof Linear4bit).count(),
                    "still 4-bit after the merge");
            NDArray ours = merged.forward(ModelInput.of(Fixtures.ids(m, baseCase, "input_ids"),
                    Fixtures.ids(m, baseCase, "attention_mask"))).logits();
            double d = Fixtures.maxAbsDiff(ours, hfMerged(m, adapterCase));
            double vsUnmerged = Fixtures.maxAbsDiff(ours, Fixtures.logits(m, adapterCase, "logits.json", "adapter_logits"));
            System.out.printf("qlora merge %s: adapter logits max|diff| = %.3g; merged logits vs HF merged max|diff| = %.3g"
                    + " (vs unmerged adapter: %.3g)%n", adapterCase, a, d, vsUnmerged);
            assertTrue(d < TOL, adapterCase + " merged: " + d);
            assertTrue(vsUnmerged > 10 * d, "the requantisation changes the logits: " + vsUnmerged);
        }
    }

    @Test
    void mergedPackedTensorsEqualBitsandbytes() throws Exception {
        try (TransformerModel base = Models.load(Fixtures.dir(NF4).resolve("base"));
                NDManager m = NDManager.newBaseManager();
                SafeTensorsFile hf = SafeTensorsFile.open(Fixtures.dir(NF4).resolve("merged_q_proj.safetensors"))) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(NF4).resolve("adapter"), "default", false);
            peft.merge("default");
            Linear4bit q = (Linear4bit) ((LoraLayer) base.resolve(Q)).baseModule();
            Map<String, Param> ps = q.localParameters();
            long bytes = 0;
            long differing = 0;
            for (String k : hf.names()) {
                byte[] expected = hf.load(k, m).toByteArray();
                byte[] found = ps.get(k).array().toByteArray();
                assertEquals(expected.length, found.length, k);
                for (int i = 0; i < expected.length; i++) {
                    differing += expected[i] != found[i] ? 1 : 0;
                }
                bytes += expected.length;
            }
            System.out.printf("qlora merge: q_proj's requantised tensors (%s) %d of %d bytes differ from bitsandbytes'%n",
                    new TreeSet<>(hf.names()), differing, bytes);
            assertEquals(0, differing, "requantised bytes");
            // unmerge requantises again (HF: dequantise, subtract, requantise): the base is rounded twice
            float[] merged = io.github.peft4j.nn.quant.FourBitQuantizer.dequantize(q.toHost());
            float[] expected;
            try (NDArray delta = ((LoraLayer) base.resolve(Q)).deltaWeight("default")) {
                float[] d = delta.toFloatArray();
                float[] w = new float[merged.length];
                for (int i = 0; i < w.length; i++) {
                    w[i] = merged[i] - d[i];
                }
                expected = io.github.peft4j.nn.quant.FourBitQuantizer.dequantize(io.github.peft4j.nn.quant.FourBitQuantizer
                        .quantize(w, new long[] {q.outFeatures(), q.inFeatures()}, q.type(), q.blocksize(), true));
            }
            peft.unmerge("default");
            assertTrue(!((LoraLayer) base.resolve(Q)).isMerged("default"));
            org.junit.jupiter.api.Assertions.assertArrayEquals(expected,
                    io.github.peft4j.nn.quant.FourBitQuantizer.dequantize(q.toHost()), 0f, "unmerged, requantised");
        }
    }

    @Test
    void denseMergeOfA4bitModelIsExact() throws Exception {
        try (TransformerModel base = Models.load(Fixtures.dir(NF4).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            assertEquals(14, Quantization.dequantize(base));
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(NF4).resolve("adapter"), "default", false);
            TransformerModel merged = peft.mergeAndUnload();
            assertInstanceOf(io.github.peft4j.nn.Linear.class, merged.resolve(Q));
            double d = Fixtures.maxAbsDiff(logits(merged, m), Fixtures.logits(m, NF4, "logits.json", "adapter_logits"));
            System.out.printf("qlora dense merge: merged logits vs HF 4-bit + adapter max|diff| = %.3g%n", d);
            assertTrue(d < TOL, "dense merge " + d);
        }
        try (TransformerModel base = Models.load(Fixtures.dir(NF4).resolve("base"))) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(NF4).resolve("adapter"), "default", false);
            PeftException e = assertThrows(PeftException.class, () -> Quantization.dequantize(base));
            assertTrue(e.getMessage().contains("before attaching adapters"), e.getMessage());
        }
    }

    private static NDArray logits(TransformerModel model, NDManager m) {
        return model.forward(ModelInput.of(Fixtures.ids(m, NF4, "input_ids"), Fixtures.ids(m, NF4, "attention_mask")))
                .logits();
    }

    @Test
    void doraOnA4bitBaseGivesHfLogits() throws Exception {
        String dora = "../bnb/llama_nf4_dq_dora";
        try (TransformerModel base = Models.load(Fixtures.dir(NF4).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(dora).resolve("adapter"), "default", false);
            LoraLayer q = assertInstanceOf(LoraLayer.class, base.resolve(Q));
            assertTrue(q.isDora("default"));
            assertInstanceOf(Linear4bit.class, q.baseModule());
            double d = Fixtures.maxAbsDiff(logits(peft, m, NF4), Fixtures.logits(m, dora, "logits.json", "adapter_logits"));
            System.out.printf("qlora dora adapter logits max|diff| = %.3g%n", d);
            assertTrue(d < TOL, "dora " + d);
        }
        // a new DoRA adapter's magnitude is the row norm of the dequantised weight (B = 0)
        try (TransformerModel base = Models.load(Fixtures.dir(NF4).resolve("base"))) {
            Linear4bit w = (Linear4bit) base.resolve(Q);
            float[] norms;
            try (NDArray dq = w.dequantize()) {
                norms = dq.square().sum(new int[] {1}).sqrt().toFloatArray();
            }
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("default", new LoraConfig().r(2).useDora(true).targetModules("q_proj"));
            float[] mag = base.parameters().get(Q + ".lora_magnitude_vector.default.weight").array().toFloatArray();
            org.junit.jupiter.api.Assertions.assertArrayEquals(norms, mag, 1e-6f);
        }
    }

    @Test
    void savedAdapterEqualsHfFilesAndNoDenseCopyIsKeptBetweenCalls(@TempDir Path tmp) throws Exception {
        String name = "../bnb/llama_nf4_dq";
        try (TransformerModel base = Models.load(Fixtures.dir(name).resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(Fixtures.dir(name).resolve("adapter"), "default", false);
            peft.save(tmp);
            try (SafeTensorsFile hf = SafeTensorsFile.open(Fixtures.dir(name).resolve("adapter/adapter_model.safetensors"));
                    SafeTensorsFile ours = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()));
                for (String k : hf.names()) {
                    assertEquals(0.0, Fixtures.maxAbsDiff(ours.load(k, m), hf.load(k, m)), k);
                }
            }
            // the dequantised weights are not kept between calls: nothing accumulates on the model's manager
            ai.djl.ndarray.BaseNDManager owner = (ai.djl.ndarray.BaseNDManager) ((Linear4bit) ((LoraLayer)
                    base.resolve(Q)).baseModule()).manager();
            NDArray ids = Fixtures.ids(m, name, "input_ids");
            try (NDScope scope = new NDScope()) {
                peft.forward(ModelInput.of(ids, null)).logits(); // warm-up: the model's RoPE table is built once
            }
            int before = owner.getManagedArrays().size();
            for (int i = 0; i < 3; i++) {
                try (NDScope scope = new NDScope()) {
                    peft.forward(ModelInput.of(ids, null)).logits();
                }
            }
            assertEquals(before, owner.getManagedArrays().size(), "arrays left on the model's manager");
        }
    }

    @Test
    void allLinearTargetsEvery4bitProjectionButTheHead() {
        try (TransformerModel base = Models.load(Fixtures.dir("../bnb/llama_fp4_skip").resolve("base"))) {
            PeftModel peft = PeftModel.wrap(base);
            LoraConfig c = new LoraConfig().r(2);
            c.targetModules(io.github.peft4j.peft.ModuleSpec.allLinear());
            peft.addAdapter("default", c);
            long lora4bit = base.modules().values().stream()
                    .filter(x -> x instanceof LoraLayer l && l.baseModule() instanceof Linear4bit).count();
            long loraDense = base.modules().values().stream()
                    .filter(x -> x instanceof LoraLayer l && l.baseModule() instanceof io.github.peft4j.nn.Linear).count();
            assertEquals(12, lora4bit); // q, k, v, gate, up, down of two layers
            assertEquals(2, loraDense); // o_proj stays dense (llm_int8_skip_modules); lm_head is never targeted
            assertInstanceOf(io.github.peft4j.nn.Linear.class, base.resolve("lm_head"));
        }
    }

    private static NDArray loss(PeftModel peft, NDArray ids, NDArray weights) {
        return peft.forward(ModelInput.of(ids, null)).logits().mul(weights).sum();
    }

    @Test
    void loraGradientsThroughA4bitBaseMatchFiniteDifferences() {
        Path dense = Fixtures.dir("llama_lora").resolve("base");
        try (TransformerModel model = Models.load(dense, HfConfig.read(dense), Device.cpu(), DataType.FLOAT32, null,
                null, Quantization.nf4());
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(11);
            peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false)
                    .targetModules("q_proj", "v_proj", "down_proj"));
            assertInstanceOf(Linear4bit.class, ((LoraLayer) model.resolve(Q)).baseModule());
            // HF PEFT's get_peft_model(4-bit model, r=4 on q/v/down_proj).print_trainable_parameters()
            assertEquals("trainable params: 3,328 || all params: 93,760 || trainable%: 3.5495", peft.trainableReport());
            NDArray ids = TinyModels.ids(m, 2, 6, 1);
            Engine.getInstance().setRandomSeed(3);
            NDArray w = m.randomNormal(new Shape(2, 6, 128));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(loss(peft, ids, w));
            }
            Map<String, Param> trainable = peft.trainableParameters();
            assertEquals(3 * 2 * 2, trainable.size());
            int checked = 0;
            double worst = 0;
            for (String name : List.of(Q + ".lora_A.default.weight", Q + ".lora_B.default.weight",
                    "model.layers.1.mlp.down_proj.lora_A.default.weight", "model.layers.0.self_attn.v_proj.lora_B.default.weight")) {
                Param p = trainable.get(name);
                float[] grad = p.array().getGradient().toFloatArray();
                for (int idx : new int[] {0, 9, 37}) {
                    double fd = TinyModels.finiteDifference(p, idx, 1e-2f, () -> {
                        try (NDScope scope = new NDScope()) {
                            return (double) loss(peft, ids, w).getFloat();
                        }
                    });
                    assertEquals(fd, grad[idx], 2e-2 * Math.max(1, Math.abs(fd)), name + "[" + idx + "]");
                    worst = Math.max(worst, Math.abs(fd - grad[idx]) / Math.max(1, Math.abs(fd)));
                    checked++;
                }
            }
            for (Map.Entry<String, Param> e : model.parameters().entrySet()) {
                if (!e.getKey().contains("lora_")) {
                    assertTrue(!e.getValue().isTrainable(), "frozen: " + e.getKey());
                }
            }
            System.out.printf("qlora gradients: %d entries match finite differences, worst relative error %.3g%n",
                    checked, worst);
        }
    }
}
