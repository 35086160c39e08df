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
 * differences; merging into a 4-bit base is refused.
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
            PeftException e = assertThrows(PeftException.class, () -> peft.merge("default"));
            assertTrue(e.getMessage().contains("Linear4bit") && e.getMessage().contains("no dense weights"), e.getMessage());
            assertThrows(PeftException.class, peft::mergeAndUnload);
            // nothing changed by the refused merge
            assertTrue(Fixtures.maxAbsDiff(logits(peft, m, name),
                    Fixtures.logits(m, name, "logits.json", "adapter_logits")) < TOL);
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
