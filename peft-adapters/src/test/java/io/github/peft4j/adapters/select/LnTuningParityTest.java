package io.github.peft4j.adapters.select;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.PretokenizedData;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LN_TUNING at HF PEFT parity (fixture: peft-adapters/src/test/python/make_selective_fixtures.py on the tiny Llama of
 * the train-parity fixture): logits, disabled logits, saved keys and config, and five SGD steps.
 */
class LnTuningParityTest {
    private static final Path BASE = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
    private static final Path CASE = Path.of("src/test/resources/fixtures/select/llama_ln_tuning").toAbsolutePath();
    private static final ObjectMapper JSON = new ObjectMapper();

    private static NDArray logits(PeftModel peft, NDManager m, JsonNode fx) {
        long[][] ids = Fixtures.matrix(fx.get("input_ids"));
        long[][] mask = Fixtures.matrix(fx.get("attention_mask"));
        return peft.forward(ModelInput.of(m.create(ids), m.create(mask))).logits();
    }

    private static NDArray expected(NDManager m, JsonNode fx, String key) {
        List<Float> flat = new ArrayList<>();
        flatten(fx.get(key), flat);
        float[] v = new float[flat.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = flat.get(i);
        }
        long[] shape = new long[fx.get(key + "_shape").size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = fx.get(key + "_shape").get(i).asLong();
        }
        return m.create(v, new ai.djl.ndarray.types.Shape(shape));
    }

    private static void flatten(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add((float) n.asDouble());
        }
    }

    @Test
    void hfAdapterGivesHfLogitsKeysAndConfig(@TempDir Path tmp) throws Exception {
        assertTrue(Files.isDirectory(CASE.resolve("adapter")), "fixture missing: " + CASE);
        JsonNode fx = JSON.readTree(CASE.resolve("logits.json").toFile());
        try (TransformerModel base = Models.load(BASE.resolve("base")); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(CASE.resolve("adapter"), PeftModel.DEFAULT, false);
            double d = Fixtures.maxAbsDiff(logits(peft, m, fx), expected(m, fx, "adapter_logits"));
            System.out.printf("parity llama_ln_tuning adapter max|diff| = %.3g%n", d);
            assertTrue(d < 1e-4, "adapter logits " + d);
            try (AutoCloseable off = peft.disabled()) {
                double b = Fixtures.maxAbsDiff(logits(peft, m, fx), expected(m, fx, "base_logits"));
                System.out.printf("parity llama_ln_tuning disabled max|diff| = %.3g%n", b);
                assertTrue(b < 1e-4, "disabled logits " + b);
            }
            assertTrue(Fixtures.maxAbsDiff(logits(peft, m, fx), expected(m, fx, "adapter_logits")) < 1e-4);
            peft.save(tmp);
            try (SafeTensorsFile f = SafeTensorsFile.open(tmp.resolve("adapter_model.safetensors"))) {
                Map<String, List<Long>> ours = new TreeMap<>();
                for (String k : f.names()) {
                    List<Long> shape = new ArrayList<>();
                    for (long s : f.info(k).shape()) {
                        shape.add(s);
                    }
                    ours.put(k, shape);
                }
                Map<String, List<Long>> hf = new TreeMap<>();
                for (Iterator<Map.Entry<String, JsonNode>> it = fx.get("saved_keys").fields(); it.hasNext(); ) {
                    Map.Entry<String, JsonNode> e = it.next();
                    List<Long> shape = new ArrayList<>();
                    e.getValue().forEach(s -> shape.add(s.asLong()));
                    hf.put(e.getKey(), shape);
                }
                assertEquals(hf, ours);
            }
            Fixtures.assertConfigKeysAsHf(JSON.readTree(CASE.resolve("adapter/adapter_config.json").toFile()),
                    JSON.readTree(tmp.resolve("adapter_config.json").toFile()), "llama_ln_tuning");
        }
    }

    @Test
    void fiveSgdStepsGiveHfPeftsLosses() throws Exception {
        JsonNode expected = JSON.readTree(CASE.resolve("losses.json").toFile());
        try (TransformerModel model = Models.load(BASE.resolve("base"), Device.cpu(), DataType.FLOAT32, null);
                Sgd sgd = Sgd.builder().build(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(CASE.resolve("adapter"), PeftModel.DEFAULT, true);
            var data = PretokenizedData.forModel(model, 0, BadLinePolicy.STOP).read(BASE.resolve("data.jsonl"));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(expected.get("lr").asDouble()).optMaxSteps(5).optBatchSize(2).optShuffle(false)
                    .optMaxGradNorm(expected.get("max_grad_norm").asDouble()).build()) {
                List<Double> losses = t.train().losses();
                double worst = 0;
                for (int i = 0; i < 5; i++) {
                    worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
                }
                System.out.printf("parity llama_ln_tuning 5 SGD steps losses %s max|diff| = %.2e%n", losses, worst);
                assertTrue(worst < 1e-4, "losses " + losses);
            }
            double sumDiff = 0;
            for (Map.Entry<String, NDArray> e : peft.adapter(PeftModel.DEFAULT).stateDict().entrySet()) {
                double hf = expected.get("trained_key_sums").get(e.getKey()).asDouble();
                sumDiff = Math.max(sumDiff, Math.abs(hf - e.getValue().sum().getFloat()));
            }
            System.out.printf("parity llama_ln_tuning trained tensor sums max|diff| = %.2e%n", sumDiff);
            assertTrue(sumDiff < 1e-3, "trained sums " + sumDiff);
        }
    }
}
