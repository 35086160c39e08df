package io.github.peft4j.adapters.bottleneck;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Bottleneck adapters against AdapterHub 1.2.0: logits of its saved adapters, and five SGD steps of training. */
class BottleneckParityTest {
    /** AdapterHub's default save, {@code pytorch_adapter.bin} (a torch pickle, read by the safe TorchBinFile). */
    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn", "bert_double_seq_bn", "bert_par_bn", "bert_scaled_par_bn", "gpt2_seq_bn",
        "gpt2_double_seq_bn", "gpt2_par_bn", "llama_seq_bn", "llama_double_seq_bn", "llama_par_bn", "bert_custom", "gpt2_custom",
        "llama_custom"})
    void adapterHubsPickleFormGivesAdapterHubLogits(String name, @TempDir Path tmp) {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(AdapterHubCases.form(name, "bin", tmp), "bn", false);
            double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
            System.out.printf("parity adapterhub %s (pytorch_adapter.bin) max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": adapter max |diff| " + diff);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn", "bert_double_seq_bn", "bert_par_bn", "bert_scaled_par_bn", "gpt2_seq_bn",
        "gpt2_double_seq_bn", "gpt2_par_bn", "llama_seq_bn", "llama_double_seq_bn", "llama_par_bn", "bert_custom", "gpt2_custom",
        "llama_custom"})
    void adapterHubAdapterGivesAdapterHubLogits(String name) throws Exception {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            float[] plain = AdapterHubCases.forward(base, m, name).toFloatArray();
            NDArray expectedBase = AdapterHubCases.logits(m, name, "logits.json", "base_logits");
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("adapter"), "bn", false); // AdapterHub's directory as is
            double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
            double baseDiff = Fixtures.maxAbsDiff(m.create(plain, expected.getShape()), expectedBase);
            System.out.printf("parity adapterhub %s adapter max|diff| = %.3g (base %.3g, adapter moves logits by %.3g)%n",
                    name, diff, baseDiff, Fixtures.maxAbsDiff(expected, expectedBase));
            assertTrue(baseDiff < 1e-4, name + ": base max |diff| " + baseDiff);
            assertTrue(diff < 1e-4, name + ": adapter max |diff| " + diff);
            assertTrue(Fixtures.maxAbsDiff(expected, expectedBase) > 1e-2, "the adapter must change the logits");
            // disabled scope and inactive adapter: the base logits, bit for bit
            try (AutoCloseable off = peft.disabled()) {
                assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray());
            }
            peft.setActive();
            assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray());
            peft.setActive("bn");
            assertTrue(Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected) < 1e-4);
            peft.deleteAdapter("bn");
            assertArrayEquals(plain, AdapterHubCases.forward(peft, m, name).toFloatArray());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn", "bert_scaled_par_bn", "gpt2_double_seq_bn", "llama_par_bn", "bert_custom", "gpt2_custom",
        "llama_custom"})
    void savedAndReloadedInBothLayoutsGivesTheSameLogits(String name, @TempDir Path tmp) {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            BottleneckAdapters.load(peft, AdapterHubCases.dir(name).resolve("adapter"), "bn", false);
            float[] expected = AdapterHubCases.forward(peft, m, name).toFloatArray();
            peft.saveAdapter("bn", tmp.resolve("peft4j"));
            BottleneckAdapters.saveAdapterHub(peft, "bn", tmp.resolve("adapterhub"));
            peft.deleteAdapter("bn");
            peft.loadAdapter(tmp.resolve("peft4j"), "again", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "peft4j layout");
            assertEquals(BottleneckConfig.TYPE, peft.adapter("again").config().peftType());
            peft.deleteAdapter("again");
            BottleneckAdapters.load(peft, tmp.resolve("adapterhub"), "third", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "AdapterHub layout");
            // the AdapterHub files hold the same tensor names and the same config as AdapterHub's own
            Path theirs = AdapterHubCases.dir(name).resolve("adapter");
            try (SafeTensorsFile a = SafeTensorsFile.open(theirs.resolve(AdapterHubFormat.WEIGHTS_FILE));
                    SafeTensorsFile b = SafeTensorsFile.open(tmp.resolve("adapterhub").resolve(AdapterHubFormat.WEIGHTS_FILE))) {
                assertEquals(new TreeSet<>(a.names()), new TreeSet<>(b.names()));
            }
            ObjectMapper json = new ObjectMapper();
            JsonNode theirConfig = json.readTree(theirs.resolve(AdapterHubFormat.CONFIG_FILE).toFile());
            JsonNode ourConfig = json.readTree(tmp.resolve("adapterhub").resolve(AdapterHubFormat.CONFIG_FILE).toFile());
            assertEquals(theirConfig.get("config"), ourConfig.get("config"));
            for (String k : List.of("hidden_size", "model_class", "model_type", "name", "version")) {
                assertEquals(theirConfig.get(k), ourConfig.get(k), k);
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /** AdapterHub's train_adapter (adapter + classifier trainable), torch.optim.SGD lr 0.1, batches of 2, no clipping. */
    @Test
    void fiveSgdStepsOfPfeifferOnBertGiveAdapterHubsLosses() {
        String name = "bert_seq_bn_train";
        JsonNode expected = AdapterHubCases.json(name, "losses.json");
        JsonNode data = AdapterHubCases.json(name, "data.json");
        List<Example> examples = new ArrayList<>();
        long[][] ids = Fixtures.matrix(data.get("input_ids"));
        for (int i = 0; i < ids.length; i++) {
            int[] row = java.util.Arrays.stream(ids[i]).mapToInt(v -> (int) v).toArray();
            examples.add(Example.classified(row, data.get("labels").get(i).asInt()));
        }
        try (TransformerModel model = Models.load(AdapterHubCases.dir("bases/bert"), Device.cpu(), DataType.FLOAT32, null);
                Sgd sgd = Sgd.builder().build(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            BottleneckAdapters.load(peft, AdapterHubCases.dir(name).resolve("initial"), "bn", true);
            assertEquals(expected.get("trainable").size(), peft.trainableParameters().size(), "trainable tensors "
                    + peft.trainableParameters().keySet() + " vs AdapterHub's " + expected.get("trainable"));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(examples).optOptimizer(sgd)
                    .optLearningRate(expected.get("lr").asDouble()).optMaxSteps(5).optBatchSize(2).optShuffle(false)
                    .optMaxGradNorm(0).build()) {
                List<Double> losses = t.train().losses();
                assertEquals(5, losses.size());
                double worst = 0;
                for (int i = 0; i < 5; i++) {
                    worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
                }
                System.out.printf("parity adapterhub train 5 SGD steps losses %s max|diff| = %.2e%n", losses, worst);
                assertTrue(worst < 1e-4, "losses " + losses + " vs AdapterHub " + expected.get("losses"));
            }
            NDArray after = peft.forward(io.github.peft4j.model.ModelInput.of(
                    m.create(new long[][] {ids[0], ids[1]}), null)).logits();
            double diff = Fixtures.maxAbsDiff(after, AdapterHubCases.logits(m, name, "losses.json", "after_logits"));
            System.out.printf("parity adapterhub train logits after 5 steps max|diff| = %.3g%n", diff);
            assertTrue(diff < 1e-4, "logits after training: max |diff| " + diff);
        }
    }

    /**
     * A peft4j-written AdapterHub directory loads in AdapterHub with the same logits. The directory under
     * {@code roundtrip/CASE/} was written by this test (run by hand with {@code -Dpeft4j.adapterhub.write=true}), and
     * {@code roundtrip/CASE.json} holds what AdapterHub computes after {@code load_adapter} of it
     * ({@code make_adapterhub_fixtures.py --check roundtrip/CASE --arch ARCH}). Here the writer must reproduce those
     * files exactly and the logits must match AdapterHub's.
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn", "gpt2_double_seq_bn", "llama_par_bn"})
    void peft4jWrittenAdapterLoadsInAdapterHubWithTheSameLogits(String name, @TempDir Path tmp) throws Exception {
        Path committed = AdapterHubCases.dir("roundtrip/" + name);
        boolean write = Boolean.getBoolean("peft4j.adapterhub.write");
        Path out = write ? committed : tmp.resolve(name);
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            BottleneckAdapters.load(peft, AdapterHubCases.dir(name).resolve("adapter"), "bn", true);
            for (io.github.peft4j.nn.Param p : peft.trainableParameters().values()) { // new values, head copy included
                p.array().muli(1.5f).addi(0.05f);
            }
            NDArray ours = AdapterHubCases.forward(peft, m, name);
            BottleneckAdapters.saveAdapterHub(peft, "bn", out);
            if (!write) {
                for (String f : List.of(AdapterHubFormat.WEIGHTS_FILE, AdapterHubFormat.HEAD_WEIGHTS_FILE)) {
                    if (!java.nio.file.Files.exists(committed.resolve(f))) {
                        assertTrue(!java.nio.file.Files.exists(out.resolve(f)), "wrote " + f + " that AdapterHub's check lacks");
                        continue;
                    }
                    try (SafeTensorsFile a = SafeTensorsFile.open(committed.resolve(f)); SafeTensorsFile b = SafeTensorsFile.open(out.resolve(f))) {
                        assertEquals(new TreeSet<>(a.names()), new TreeSet<>(b.names()), f);
                        for (String k : a.names()) {
                            assertArrayEquals(a.load(k, m).toFloatArray(), b.load(k, m).toFloatArray(), f + ": " + k);
                        }
                    }
                }
                ObjectMapper json = new ObjectMapper();
                assertEquals(json.readTree(committed.resolve(AdapterHubFormat.CONFIG_FILE).toFile()),
                        json.readTree(out.resolve(AdapterHubFormat.CONFIG_FILE).toFile()));
            }
            NDArray theirs = AdapterHubCases.logits(m, "roundtrip", name + ".json", "adapter_logits");
            double diff = Fixtures.maxAbsDiff(ours, theirs);
            System.out.printf("parity adapterhub loads peft4j-written %s max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": AdapterHub's logits of the peft4j-written adapter differ by " + diff);
        }
    }

    /** Two active adapters chain at each site in the order they were added: AdapterHub's {@code Stack("a", "b")}. */
    @Test
    void twoActiveAdaptersEqualAdapterHubsStack() {
        String name = "bert_stack";
        try (TransformerModel base = AdapterHubCases.base("bert"); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("a"), "a", false);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("b"), "b", false);
            peft.setActive("a", "b");
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
            System.out.printf("parity adapterhub %s Stack(seq_bn, double_seq_bn) max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, "Stack(a, b): max |diff| " + diff);
            peft.setActive("a");
            assertTrue(Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected) > 1e-2, "b must matter");
        }
    }

    private static Path copyOf(Path dir, Path to) throws java.io.IOException {
        java.nio.file.Files.createDirectories(to);
        try (java.util.stream.Stream<Path> files = java.nio.file.Files.list(dir)) {
            for (Path f : files.toList()) {
                java.nio.file.Files.copy(f, to.resolve(f.getFileName()));
            }
        }
        return to;
    }

    private static void edit(Path configFile, java.util.function.Consumer<com.fasterxml.jackson.databind.node.ObjectNode> change)
            throws java.io.IOException {
        ObjectMapper json = new ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode n = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(configFile.toFile());
        change.accept(n);
        java.nio.file.Files.writeString(configFile, json.writeValueAsString(n));
    }

    @Test
    void adapterHubDirectoriesAreCheckedAndAHeadlessOneKeepsTheBaseClassifier(@TempDir Path tmp) throws Exception {
        Path fixture = AdapterHubCases.dir("bert_seq_bn").resolve("adapter");
        try (TransformerModel base = AdapterHubCases.base("bert"); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            Path lora = copyOf(fixture, tmp.resolve("lora"));
            edit(lora.resolve(AdapterHubFormat.CONFIG_FILE), n -> ((com.fasterxml.jackson.databind.node.ObjectNode) n.get("config"))
                    .put("architecture", "reft"));
            assertMessage(() -> peft.loadAdapter(lora, "x", false), "architecture 'reft'");
            Path gpt = copyOf(fixture, tmp.resolve("gpt"));
            edit(gpt.resolve(AdapterHubFormat.CONFIG_FILE), n -> n.put("model_type", "gpt2"));
            assertMessage(() -> peft.loadAdapter(gpt, "x", false), "model_type 'gpt2'");
            Path pickle = copyOf(fixture, tmp.resolve("pickle"));
            java.nio.file.Files.move(pickle.resolve(AdapterHubFormat.WEIGHTS_FILE), pickle.resolve(AdapterHubFormat.PICKLE_FILE),
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            // a safetensors file under the pickle's name: the safe torch.save reader refuses it, naming the file
            assertMessage(() -> peft.loadAdapter(pickle, "x", false), AdapterHubFormat.PICKLE_FILE);
            Path renamed = copyOf(fixture, tmp.resolve("renamed"));
            edit(renamed.resolve(AdapterHubFormat.CONFIG_FILE), n -> n.put("name", "other"));
            assertMessage(() -> peft.loadAdapter(renamed, "x", false), "not an AdapterHub key of adapter 'other'");
            assertMessage(() -> BottleneckAdapters.load(peft, AdapterHubCases.dir("bases/bert"), "x", false),
                    "not an AdapterHub adapter directory");
            assertTrue(peft.adapterNames().isEmpty(), "failed loads leave no adapter: " + peft.adapterNames());
            // without head files the classifier copy keeps the base classifier (AdapterHub's head equals it here)
            Path headless = copyOf(fixture, tmp.resolve("headless"));
            java.nio.file.Files.delete(headless.resolve(AdapterHubFormat.HEAD_WEIGHTS_FILE));
            java.nio.file.Files.delete(headless.resolve(AdapterHubFormat.HEAD_CONFIG_FILE));
            peft.loadAdapter(headless, "bn", false);
            NDArray expected = AdapterHubCases.logits(m, "bert_seq_bn", "logits.json", "adapter_logits");
            assertTrue(Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, "bert_seq_bn"), expected) < 1e-4);
        }
    }

    private static void assertMessage(org.junit.jupiter.api.function.Executable call, String part) {
        io.github.peft4j.PeftException e = org.junit.jupiter.api.Assertions.assertThrows(io.github.peft4j.PeftException.class, call);
        assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' lacks '" + part + "'");
    }
}
