package io.github.peft4j.adapters.unipelt;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.adapters.bottleneck.AdapterHubCases;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.adapters.bottleneck.AdapterHubFormat;
import io.github.peft4j.adapters.bottleneck.BottleneckAdapters;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.peft.PeftMethods;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * UniPELT, MAM, a union of every other prefix / LoRA option, and the NICE invertible adapters, made by AdapterHub
 * ({@code make_adapterhub_fixtures.py --new}): AdapterHub's directories load in peft4j, from the safetensors and from
 * the torch pickle form, with AdapterHub's logits.
 */
class UnionParityTest {
    @ParameterizedTest
    @ValueSource(strings = {"bert_unipelt", "bert_mam", "bert_union_custom", "bert_seq_bn_inv", "bert_double_seq_bn_inv",
        "gpt2_unipelt", "gpt2_mam", "gpt2_union_custom", "gpt2_seq_bn_inv", "llama_unipelt", "llama_mam",
        "llama_union_custom", "llama_seq_bn_inv"})
    void adapterHubFilesGiveAdapterHubsLogitsInBothForms(String name, @TempDir Path tmp) {
        JsonNode logits = AdapterHubCases.json(name, "logits.json");
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            float[] plain = AdapterHubCases.forward(base, m, name).toFloatArray();
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            PeftModel peft = PeftModel.wrap(base);
            for (String form : AdapterHubCases.FORMS) {
                peft.loadAdapter(AdapterHubCases.form(name, form, tmp), "u", false);
                double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
                double moves = Fixtures.maxAbsDiff(expected, m.create(plain, expected.getShape()));
                System.out.printf("parity adapterhub %s (%s) max|diff| = %.3g (the adapter moves logits by %.3g)%n", name,
                        form, diff, moves);
                assertTrue(diff < 1e-4, name + " " + form + ": max |diff| " + diff);
                assertEquals(logits.get("adapter_moves_logits_by").asDouble(), moves, 1e-4, "the fixture's base logits");
                assertTrue(moves > 1e-2, "the adapter must change the logits");
                try (AutoCloseable off = peft.disabled()) {
                    assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray(), "disabled");
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                peft.deleteAdapter("u");
                assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray(), "deleted");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert_unipelt", "bert_mam", "bert_union_custom", "bert_seq_bn_inv", "gpt2_unipelt", "gpt2_mam",
        "gpt2_union_custom", "llama_unipelt", "llama_mam", "llama_union_custom", "llama_seq_bn_inv"})
    void savedAndReloadedInBothLayoutsGivesTheSameLogitsAndAdapterHubsFiles(String name, @TempDir Path tmp) throws Exception {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            Path theirs = AdapterHubCases.form(name, "safetensors", tmp);
            BottleneckAdapters.load(peft, theirs, "u", false);
            float[] expected = AdapterHubCases.forward(peft, m, name).toFloatArray();
            peft.saveAdapter("u", tmp.resolve("peft4j"));
            BottleneckAdapters.saveAdapterHub(peft, "u", tmp.resolve("adapterhub"));
            String type = peft.adapter("u").config().peftType();
            peft.deleteAdapter("u");
            peft.loadAdapter(tmp.resolve("peft4j"), "again", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "peft4j layout");
            assertEquals(type, PeftMethods.read(tmp.resolve("peft4j").resolve("adapter_config.json")).peftType());
            peft.deleteAdapter("again");
            BottleneckAdapters.load(peft, tmp.resolve("adapterhub"), "third", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "AdapterHub layout");
            // the same tensor names (AdapterHub's duplicates included) and the same config as AdapterHub's own files
            try (SafeTensorsFile a = SafeTensorsFile.open(theirs.resolve(AdapterHubFormat.WEIGHTS_FILE));
                    SafeTensorsFile b = SafeTensorsFile.open(tmp.resolve("adapterhub").resolve(AdapterHubFormat.WEIGHTS_FILE))) {
                assertEquals(new TreeSet<>(a.names()), new TreeSet<>(b.names()));
            }
            ObjectMapper json = new ObjectMapper();
            JsonNode theirConfig = json.readTree(theirs.resolve(AdapterHubFormat.CONFIG_FILE).toFile());
            JsonNode ourConfig = json.readTree(tmp.resolve("adapterhub").resolve(AdapterHubFormat.CONFIG_FILE).toFile());
            assertEquals(theirConfig.get("config"), ourConfig.get("config"));
            for (String k : List.of("hidden_size", "model_class", "model_type", "version")) {
                assertEquals(theirConfig.get(k), ourConfig.get(k), k);
            }
        }
    }

    /** peft4j's presets are AdapterHub's: {@code UniPELTConfig()}, {@code MAMConfig()}, {@code seq_bn_inv}, ... */
    @Test
    void presetsEqualAdapterHubsDefaults() {
        JsonNode d = AdapterHubCases.json(".", "union_defaults.json");
        assertEquals(d.get("unipelt"), UnionConfig.uniPelt().adapterHubConfig());
        assertEquals(d.get("mam"), UnionConfig.mam().adapterHubConfig());
        assertEquals(d.get("seq_bn_inv"), AdapterHubFormat.hubDict(BottleneckConfig.preset("seq_bn_inv")));
        assertEquals(d.get("double_seq_bn_inv"), AdapterHubFormat.hubDict(BottleneckConfig.preset("double_seq_bn_inv")));
        assertEquals(d.get("prefix_tuning"), PeftMethods.mapper().valueToTree(new HubPrefixConfig()));
        assertEquals(d.get("lora"), PeftMethods.mapper().valueToTree(new HubLoraConfig()));
    }

    /**
     * A peft4j-written AdapterHub directory of a union loads in AdapterHub with the same logits. With
     * {@code -Dpeft4j.adapterhub.write=true} this test writes {@code roundtrip/CASE/}; then
     * {@code make_adapterhub_fixtures.py --check roundtrip/CASE --arch ARCH --digests} has AdapterHub load it (failing on
     * any missing or unexpected key) and records its logits and the SHA-256 of every file in {@code roundtrip/CASE.json};
     * the directory is then deleted. Here the writer must produce exactly those bytes, and the logits must match.
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert_unipelt", "bert_mam", "bert_seq_bn_inv", "gpt2_union_custom", "llama_mam"})
    void peft4jWrittenUnionLoadsInAdapterHubWithTheSameLogits(String name, @TempDir Path tmp) throws Exception {
        boolean write = Boolean.getBoolean("peft4j.adapterhub.write");
        Path out = write ? AdapterHubCases.dir("roundtrip").resolve(name) : tmp.resolve(name);
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            BottleneckAdapters.load(peft, AdapterHubCases.form(name, "safetensors", tmp), "bn", true);
            for (io.github.peft4j.nn.Param p : peft.trainableParameters().values()) { // new values, head copy included
                p.array().muli(1.5f).addi(0.05f);
            }
            NDArray ours = AdapterHubCases.forward(peft, m, name);
            BottleneckAdapters.saveAdapterHub(peft, "bn", out);
            if (write) {
                return;
            }
            JsonNode record = AdapterHubCases.json("roundtrip", name + ".json");
            JsonNode sums = record.get("sha256");
            List<String> files;
            try (java.util.stream.Stream<Path> s = Files.list(out)) {
                files = s.map(f -> f.getFileName().toString()).sorted().toList();
            }
            assertEquals(new TreeSet<>(iterable(sums.fieldNames())), new TreeSet<>(files), "the files AdapterHub loaded");
            for (String f : files) {
                String sum = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(out.resolve(f))));
                assertEquals(sums.get(f).asText(), sum, f + ": not the bytes AdapterHub loaded");
            }
            assertEquals(0, record.get("missing_keys").size(), "AdapterHub's missing keys " + record.get("missing_keys"));
            assertEquals(0, record.get("unexpected_keys").size(), "AdapterHub's unexpected keys");
            NDArray theirs = AdapterHubCases.logits(m, "roundtrip", name + ".json", "adapter_logits");
            double diff = Fixtures.maxAbsDiff(ours, theirs);
            System.out.printf("parity adapterhub loads peft4j-written %s max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": AdapterHub's logits of the peft4j-written adapter differ by " + diff);
        }
    }

    /**
     * AdapterHub's {@code train_adapter} of UniPELT (every part and gate, and the classifier, trainable) from its own
     * initialisation, saved as its default pickle: 5 SGD steps (lr 0.1, batches of 2, no clipping) give its losses.
     */
    @Test
    void fiveSgdStepsOfUniPeltOnBertGiveAdapterHubsLosses() {
        String name = "bert_unipelt_train";
        JsonNode expected = AdapterHubCases.json(name, "losses.json");
        JsonNode data = AdapterHubCases.json(name, "data.json");
        List<io.github.peft4j.data.Example> examples = new java.util.ArrayList<>();
        long[][] ids = Fixtures.matrix(data.get("input_ids"));
        for (int i = 0; i < ids.length; i++) {
            int[] row = java.util.Arrays.stream(ids[i]).mapToInt(v -> (int) v).toArray();
            examples.add(io.github.peft4j.data.Example.classified(row, data.get("labels").get(i).asInt()));
        }
        try (TransformerModel model = AdapterHubCases.base("bert"); io.github.peft4j.train.Sgd sgd = io.github.peft4j.train.Sgd.builder().build();
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            BottleneckAdapters.load(peft, AdapterHubCases.dir(name).resolve("initial"), "u", true);
            assertEquals(expected.get("trainable").size(), peft.trainableParameters().size(), "trainable tensors "
                    + peft.trainableParameters().keySet() + " vs AdapterHub's " + expected.get("trainable"));
            try (io.github.peft4j.train.PeftTrainer t = io.github.peft4j.train.PeftTrainer.builder().setModel(peft)
                    .setTrainData(examples).optOptimizer(sgd).optLearningRate(expected.get("lr").asDouble()).optMaxSteps(5)
                    .optBatchSize(2).optShuffle(false).optMaxGradNorm(0).build()) {
                List<Double> losses = t.train().losses();
                assertEquals(5, losses.size());
                double worst = 0;
                for (int i = 0; i < 5; i++) {
                    worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
                }
                System.out.printf("parity adapterhub unipelt train 5 SGD steps losses %s max|diff| = %.2e%n", losses, worst);
                assertTrue(worst < 1e-4, "losses " + losses + " vs AdapterHub " + expected.get("losses"));
            }
            NDArray after = peft.forward(io.github.peft4j.model.ModelInput.of(m.create(new long[][] {ids[0], ids[1]}), null))
                    .logits();
            double diff = Fixtures.maxAbsDiff(after, AdapterHubCases.logits(m, name, "losses.json", "after_logits"));
            System.out.printf("parity adapterhub unipelt logits after 5 steps max|diff| = %.3g%n", diff);
            assertTrue(diff < 1e-4, "logits after training: max |diff| " + diff);
        }
    }

    private static <T> java.util.List<T> iterable(java.util.Iterator<T> it) {
        java.util.List<T> out = new java.util.ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }
}
