package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** adapter_config.json handling, bad adapter files, and a short training run. */
class LoraFilesTest {
    @TempDir
    Path tmp;

    @Test
    void configJsonIsHfShapedAndUnknownKeysAreIgnored() {
        LoraConfig c = new LoraConfig().r(16).loraAlpha(32).useRslora(true).targetModules("q_proj", "v_proj");
        String json = PeftMethods.toJson(c);
        assertTrue(json.contains("\"lora_alpha\" : 32") && json.contains("\"use_rslora\" : true")
                && json.contains("\"target_modules\" : [ \"q_proj\", \"v_proj\" ]") && json.contains("\"modules_to_save\" : null"), json);
        assertTrue(json.indexOf("\"alpha_pattern\"") < json.indexOf("\"r\"") && json.indexOf("\"r\"") < json.indexOf("\"use_rslora\""), json);
        PeftConfig back = PeftMethods.parse(json.replaceFirst("\\{", "{ \"a_future_key\": {\"x\": 1}, \"peft_version\": \"9.9\","), "test");
        assertTrue(back instanceof LoraConfig);
        assertEquals(16, ((LoraConfig) back).r());
        assertEquals(32.0 / 4, ((LoraConfig) back).scalingFor("a.q_proj"), 1e-12);
        // a file written by HF PEFT 0.21, with its many newer keys, reads
        PeftConfig hf = PeftMethods.read(Fixtures.dir("qwen2_lora").resolve("adapter/adapter_config.json"));
        assertEquals(8, ((LoraConfig) hf).rankFor("model.layers.0.self_attn.q_proj"));
        PeftException e = assertThrows(PeftException.class, () -> PeftMethods.parse("{\"peft_type\": \"NOPE\"}", "x.json"));
        assertTrue(e.getMessage().contains("peft_type 'NOPE' is not available; registered methods: ["), e.getMessage());
        e = assertThrows(PeftException.class, () -> PeftMethods.parse("{\"peft_type\": \"LORA\", \"r\": -2}", "x.json"));
        assertTrue(e.getMessage().startsWith("x.json: 'r' must be a positive integer"), e.getMessage());
        e = assertThrows(PeftException.class, () -> PeftMethods.parse("{\"peft_type\": \"LORA\", \"r\": \"eight\"}", "x.json"));
        assertTrue(e.getMessage().startsWith("x.json: invalid LORA config"), e.getMessage());
    }

    @Test
    void badAdapterFilesNameTheTensorAndLeaveNoAdapterBehind() throws Exception {
        Path src = Fixtures.dir("llama_lora");
        try (TransformerModel base = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            // same architecture as the fixture, so the adapter attaches; now corrupt one tensor's shape
            Path bad = tmp.resolve("bad");
            Files.createDirectories(bad);
            Files.copy(src.resolve("adapter/adapter_config.json"), bad.resolve("adapter_config.json"));
            Map<String, NDArray> t = new java.util.TreeMap<>();
            try (io.github.peft4j.io.SafeTensorsFile f = io.github.peft4j.io.SafeTensorsFile.open(src.resolve("adapter/adapter_model.safetensors"))) {
                for (String k : f.names()) {
                    t.put(k, f.load(k, m));
                }
            }
            String key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
            t.put(key, m.zeros(new Shape(3, 64)));
            SafeTensorsWriter.write(bad.resolve("adapter_model.safetensors"), t, Map.of("format", "pt"));
            PeftModel peft = PeftModel.wrap(base);
            PeftException e = assertThrows(PeftException.class, () -> peft.loadAdapter(bad, "x", false));
            assertTrue(e.getMessage().contains("tensor '" + key + "' has shape (3, 64), the model needs (4, 64)"), e.getMessage());
            assertTrue(peft.adapterNames().isEmpty());
            assertTrue(base.parameters().keySet().stream().noneMatch(k -> k.contains("lora")), "rolled back");
            t.remove(key);
            SafeTensorsWriter.write(bad.resolve("adapter_model.safetensors"), t, Map.of("format", "pt"));
            e = assertThrows(PeftException.class, () -> peft.loadAdapter(bad, "x", false));
            assertTrue(e.getMessage().contains("missing tensor '" + key + "'"), e.getMessage());
            e = assertThrows(PeftException.class, () -> peft.loadAdapter(tmp.resolve("nowhere"), "x", false));
            assertTrue(e.getMessage().contains("adapter_config.json: no such file"), e.getMessage());
        }
    }

    @Test
    void trainingTheAdapterLowersTheLossAndSavedWeightsReload() {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(8).loraAlpha(16).targetModules("q_proj", "k_proj", "v_proj", "o_proj"));
            NDArray ids = TinyModels.ids(m, 4, 12, 5);
            NDArray targets = ids.get(":, 1:").oneHot(128); // next-token targets [4, 11, 128]
            Map<String, Param> params = peft.trainableParameters();
            double first = 0;
            double last = 0;
            model.train(true);
            for (int step = 0; step < 40; step++) {
                try (NDScope scope = new NDScope()) {
                    NDArray loss;
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray logits = peft.forward(ModelInput.of(ids, null)).logits().get(":, :-1, :");
                        loss = logits.logSoftmax(-1).mul(targets).sum().neg().div(Ops.scalar(logits, 4 * 11));
                        gc.backward(loss);
                    }
                    for (Param p : params.values()) {
                        NDArray g = p.array().getGradient();
                        p.array().subi(g.mul(Ops.scalar(g, 0.5)));
                    }
                    double v = loss.getFloat();
                    first = step == 0 ? v : first;
                    last = v;
                }
            }
            model.train(false);
            assertTrue(last < 0.7 * first, "loss " + first + " -> " + last);
            NDArray tuned = peft.forward(ModelInput.of(ids, null)).logits();
            peft.save(tmp);
            try (TransformerModel fresh = TinyModels.llama()) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(tmp, "default", false);
                assertEquals(0.0, Fixtures.maxAbsDiff(again.forward(ModelInput.of(ids, null)).logits(), tuned), 1e-6);
            }
        }
    }
}
