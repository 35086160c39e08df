package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Prefix tuning on BERT (sequence and token classification) at HF PEFT 0.21 parity: the prefix keys/values are
 * put before every layer's own, the mask grows by the virtual positions, the positions start after them. The
 * fixtures (made by {@code make_fixtures.py}) reuse the base of {@code bert_lora} / {@code bert_tokcls_lora}
 * (named by {@code base_case} in logits.json) and have a right-padded row; the {@code _proj} cases use
 * {@code prefix_projection} and pass {@code token_type_ids}.
 */
class BertPrefixParityTest {
    private static final double TOL = 1e-4;

    @TempDir
    Path tmp;

    private static Path baseDir(String name) {
        JsonNode baseCase = Fixtures.json(name, "logits.json").get("base_case");
        assertNotNull(baseCase, name + "/logits.json has no base_case");
        return Fixtures.dir(baseCase.asText()).resolve("base");
    }

    private static ModelInput input(NDManager m, String name) {
        return new ModelInput(Fixtures.ids(m, name, "input_ids"), null, Fixtures.ids(m, name, "attention_mask"),
                Fixtures.ids(m, name, "token_type_ids"), null, null, false);
    }

    private static double check(PeftModel peft, NDManager m, String name, String key, String what) {
        NDArray logits = peft.forward(input(m, name)).logits();
        NDArray expected = Fixtures.logits(m, name, "logits.json", key);
        assertEquals(expected.getShape(), logits.getShape(), name + " " + what + " logits shape");
        double diff = Fixtures.maxAbsDiff(logits, expected);
        System.out.printf("parity %s %s max|diff| = %.3g%n", name, what, diff);
        assertTrue(diff < TOL, name + ": " + what + " max |diff| " + diff);
        return diff;
    }

    private static JsonNode config(Path dir) throws Exception {
        return new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert_prefix", "bert_prefix_proj", "bert_tokcls_prefix", "bert_tokcls_prefix_proj"})
    void hfAdapterLogitsAndSaveRoundTrip(String name) throws Exception {
        Path src = Fixtures.dir(name).resolve("adapter");
        Path out = tmp.resolve(name);
        try (NDManager keep = NDManager.newBaseManager()) {
            NDArray adapterLogits = savedAndLogits(name, src, out, keep);
            // reload what peft4j saved into a fresh base
            try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager()) {
                PeftModel peft = PeftModel.wrap(model);
                peft.loadAdapter(out, PeftModel.DEFAULT, false);
                double diff = Fixtures.maxAbsDiff(peft.forward(input(m, name)).logits(), adapterLogits);
                System.out.printf("parity %s reloaded-from-peft4j-save max|diff| = %.3g%n", name, diff);
                assertEquals(0.0, diff, name + " logits after save and reload");
            }
        }
    }

    /** Checks HF's adapter against HF's logits, saves it to out, compares the files; returns the logits in keep. */
    private static NDArray savedAndLogits(String name, Path src, Path out, NDManager keep) throws Exception {
        try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(src, PeftModel.DEFAULT, false);
            check(peft, m, name, "adapter_logits", "adapter");
            try (AutoCloseable off = peft.disabled()) {
                check(peft, m, name, "base_logits", "disabled");
            }
            NDArray logits = peft.forward(input(m, name)).logits().toDevice(keep.getDevice(), true);
            logits.attach(keep);

            // save: HF's tensor names, shapes and values, and HF's config values for every key peft4j writes
            peft.save(out);
            try (SafeTensorsFile hf = SafeTensorsFile.open(src.resolve("adapter_model.safetensors"));
                    SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()), name + " saved keys");
                for (String k : hf.names()) {
                    assertEquals(hf.info(k).djlShape(), ours.info(k).djlShape(), name + " " + k + " shape");
                    assertEquals(0.0, Fixtures.maxAbsDiff(ours.load(k, m), hf.load(k, m)), name + " " + k);
                }
            }
            JsonNode a = config(src);
            JsonNode b = config(out);
            Fixtures.assertConfigKeysAsHf(a, b, name);
            return logits;
        }
    }

    /**
     * HF saves only the output of the projection MLP; the fixture also holds the whole prefix encoder. A new
     * peft4j projection adapter given those weights (and HF's classifier) computes HF's prefix and logits, and
     * saves that MLP output under HF's keys.
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert_prefix_proj", "bert_tokcls_prefix_proj"})
    void projectionMlpMatchesHf(String name) throws Exception {
        Path dir = Fixtures.dir(name);
        JsonNode hfConfig = config(dir.resolve("adapter"));
        try (TransformerModel model = Models.load(baseDir(name)); NDManager m = NDManager.newBaseManager();
                SafeTensorsFile encoder = SafeTensorsFile.open(dir.resolve("prefix_encoder.safetensors"));
                SafeTensorsFile hfAdapter = SafeTensorsFile.open(dir.resolve("adapter/adapter_model.safetensors"))) {
            PeftModel peft = PeftModel.wrap(model);
            PrefixTuningAdapter adapter = (PrefixTuningAdapter) peft.addAdapter(PeftModel.DEFAULT, new PrefixTuningConfig()
                    .numVirtualTokens(hfConfig.get("num_virtual_tokens").asInt()).prefixProjection(true)
                    .encoderHiddenSize(hfConfig.get("encoder_hidden_size").asInt()));
            assertTrue(adapter.hasProjection());
            Map<String, String> sources = new TreeMap<>();
            for (String k : encoder.names()) {
                sources.put("prompt_encoder.default." + k, "prefix_encoder.safetensors:" + k);
            }
            sources.put("classifier.modules_to_save.default.weight", "adapter:base_model.classifier.weight");
            sources.put("classifier.modules_to_save.default.bias", "adapter:base_model.classifier.bias");
            Map<String, Param> trainable = peft.trainableParameters();
            assertEquals(sources.keySet(), new TreeSet<>(trainable.keySet()), name + " trainable parameters");
            for (Map.Entry<String, String> e : sources.entrySet()) {
                String[] s = e.getValue().split(":", 2);
                SafeTensorsFile f = s[0].equals("adapter") ? hfAdapter : encoder;
                Param p = trainable.get(e.getKey());
                NDArray value = f.load(s[1], model.manager());
                assertEquals(p.shape(), value.getShape(), name + " " + e.getKey() + " shape");
                p.set(value);
            }
            check(peft, m, name, "adapter_logits", "projection-mlp");

            Path out = tmp.resolve(name + "-mlp");
            peft.save(out);
            try (SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(hfAdapter.names()), new TreeSet<>(ours.names()), name + " saved keys");
                double diff = Fixtures.maxAbsDiff(ours.load("prompt_embeddings", m), hfAdapter.load("prompt_embeddings", m));
                System.out.printf("parity %s saved prompt_embeddings (MLP output) max|diff| = %.3g%n", name, diff);
                assertTrue(diff < 1e-5, name + " saved prompt_embeddings differ from HF's by " + diff);
            }
        }
    }
}
