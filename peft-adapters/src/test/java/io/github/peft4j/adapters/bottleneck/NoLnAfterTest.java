package io.github.peft4j.adapters.bottleneck;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * AdapterHub's {@code original_ln_after: false}: the adapter's output ends the sub-block, without the model's residual
 * add and (BERT) LayerNorm. Fixtures made by AdapterHub 1.2.0 ({@code make_adapterhub_fixtures.py --no-ln-after}).
 */
class NoLnAfterTest {
    /** Both weight forms of each case give AdapterHub's logits; with {@code original_ln_after} flipped they do not. */
    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn_no_ln_after", "bert_par_bn_no_ln_after", "bert_double_seq_bn_no_ln_after",
        "gpt2_seq_bn_no_ln_after", "gpt2_par_bn_no_ln_after", "llama_seq_bn_no_ln_after", "llama_par_bn_no_ln_after"})
    void adapterHubsFilesGiveAdapterHubsLogits(String name, @TempDir Path tmp) throws Exception {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            NDArray plain = AdapterHubCases.forward(base, m, name);
            assertTrue(Fixtures.maxAbsDiff(plain, expected) > 1e-2, name + ": the adapter must change the logits");
            PeftModel peft = PeftModel.wrap(base);
            for (String form : AdapterHubCases.FORMS) {
                Path dir = AdapterHubCases.form(name, form, tmp);
                peft.loadAdapter(dir, "bn", false);
                assertTrue(!((BottleneckAdapter) peft.adapter("bn")).bottleneckConfig().originalLnAfterOn(), name);
                double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
                System.out.printf("parity adapterhub %s (%s) original_ln_after false max|diff| = %.3g%n", name, form, diff);
                assertTrue(diff < 1e-4, name + " (" + form + "): max |diff| " + diff);
                peft.deleteAdapter("bn");
            }
            assertArrayEquals(plain.toFloatArray(), AdapterHubCases.forward(peft, m, name).toFloatArray(),
                    "deleting the adapter removes its finisher");
            for (SiteRole role : List.of(SiteRole.ATTENTION_OUTPUT, SiteRole.FFN_OUTPUT)) {
                assertTrue(base.site(role, 0).isEmpty(), role + ": " + base.site(role, 0).owners());
            }
            // the same weights with original_ln_after true: the model's residual (and LayerNorm) come back
            Path flipped = AdapterHubCases.form(name, "safetensors", tmp.resolve("flipped"));
            Path cfg = flipped.resolve(AdapterHubFormat.CONFIG_FILE);
            ObjectMapper json = new ObjectMapper();
            com.fasterxml.jackson.databind.node.ObjectNode n = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(cfg.toFile());
            ((com.fasterxml.jackson.databind.node.ObjectNode) n.get("config")).put("original_ln_after", true);
            Files.writeString(cfg, json.writeValueAsString(n));
            peft.loadAdapter(flipped, "on", false);
            double moved = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
            System.out.printf("parity adapterhub %s: original_ln_after true instead moves the logits by %.3g%n", name, moved);
            assertTrue(moved > 1e-2, name + ": original_ln_after must matter, moved " + moved);
        }
    }

    /** AdapterHub's Stack: the last adapter's post_forward decides how each sub-block ends. */
    @Test
    void inAStackTheLastAdapterDecides() {
        String name = "bert_stack_no_ln_after";
        try (TransformerModel base = AdapterHubCases.base("bert"); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("a"), "a", false);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("b"), "b", false);
            peft.setActive("a", "b");
            NDArray ab = AdapterHubCases.logits(m, name, "logits.json", "ab_logits");
            double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), ab);
            System.out.printf("parity adapterhub %s Stack(a no_ln_after, b) max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, "Stack(a, b): max |diff| " + diff);
            // reloaded in the other order (peft4j stacks in the order adapters were added)
            peft.deleteAdapter("a");
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("a"), "a", false);
            peft.setActive("b", "a");
            NDArray ba = AdapterHubCases.logits(m, name, "logits.json", "ba_logits");
            diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), ba);
            System.out.printf("parity adapterhub %s Stack(b, a no_ln_after) max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, "Stack(b, a): max |diff| " + diff);
            assertTrue(Fixtures.maxAbsDiff(ab, ba) > 1e-2, "the order must matter");
        }
    }

    /**
     * Three methods active at once under one name: AdapterHub's {@code ConfigUnion} of prefix tuning, that Pfeiffer and
     * LoRA (the bottleneck part ends the feed-forward blocks; the prefix and LoRA act inside the attention).
     */
    @Test
    void aUnionWithSuchABottleneckGivesAdapterHubsLogits() {
        String name = "bert_union_no_ln_after";
        try (TransformerModel base = AdapterHubCases.base("bert"); NDManager m = NDManager.newBaseManager()) {
            NDArray expected = AdapterHubCases.logits(m, name, "logits.json", "adapter_logits");
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(AdapterHubCases.dir(name).resolve("adapter"), "u", false);
            assertEquals(io.github.peft4j.adapters.unipelt.UnionConfig.TYPE, peft.adapter("u").config().peftType());
            double diff = Fixtures.maxAbsDiff(AdapterHubCases.forward(peft, m, name), expected);
            System.out.printf("parity adapterhub %s (prefix + seq_bn original_ln_after false + LoRA) max|diff| = %.3g%n",
                    name, diff);
            assertTrue(diff < 1e-4, name + ": max |diff| " + diff);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert_double_seq_bn_no_ln_after", "gpt2_par_bn_no_ln_after", "llama_seq_bn_no_ln_after"})
    void savedAndReloadedInBothLayoutsGivesTheSameLogits(String name, @TempDir Path tmp) throws Exception {
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            BottleneckAdapters.load(peft, AdapterHubCases.form(name, "safetensors", tmp), "bn", false);
            float[] expected = AdapterHubCases.forward(peft, m, name).toFloatArray();
            peft.saveAdapter("bn", tmp.resolve("peft4j"));
            BottleneckAdapters.saveAdapterHub(peft, "bn", tmp.resolve("adapterhub"));
            peft.deleteAdapter("bn");
            peft.loadAdapter(tmp.resolve("peft4j"), "again", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "peft4j layout");
            JsonNode saved = new ObjectMapper().readTree(tmp.resolve("peft4j").resolve("adapter_config.json").toFile());
            assertEquals(false, saved.get("original_ln_after").asBoolean(true), "peft4j's adapter_config.json");
            peft.deleteAdapter("again");
            BottleneckAdapters.load(peft, tmp.resolve("adapterhub"), "third", false);
            assertArrayEquals(expected, AdapterHubCases.forward(peft, m, name).toFloatArray(), "AdapterHub layout");
            ObjectMapper json = new ObjectMapper();
            assertEquals(json.readTree(AdapterHubCases.dir(name).resolve("adapter").resolve(AdapterHubFormat.CONFIG_FILE).toFile())
                    .get("config"), json.readTree(tmp.resolve("adapterhub").resolve(AdapterHubFormat.CONFIG_FILE).toFile()).get("config"));
        }
    }

    /**
     * A peft4j-written directory loads in AdapterHub with the same logits. With {@code -Dpeft4j.adapterhub.write=true}
     * this test writes {@code roundtrip/CASE/}; {@code make_adapterhub_fixtures.py --check roundtrip/CASE --arch ARCH
     * --digests} has AdapterHub load it and records its logits and the SHA-256 of every file (the directory is then
     * deleted). Here the writer must produce those bytes, and the logits must match.
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert_seq_bn_no_ln_after", "bert_par_bn_no_ln_after", "gpt2_par_bn_no_ln_after"})
    void peft4jWrittenAdapterLoadsInAdapterHubWithTheSameLogits(String name, @TempDir Path tmp) throws Exception {
        boolean write = Boolean.getBoolean("peft4j.adapterhub.write");
        Path out = write ? AdapterHubCases.dir("roundtrip").resolve(name) : tmp.resolve(name);
        try (TransformerModel base = AdapterHubCases.base(AdapterHubCases.arch(name)); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            BottleneckAdapters.load(peft, AdapterHubCases.form(name, "safetensors", tmp), "bn", true);
            for (Param p : peft.trainableParameters().values()) { // new values, head copy included
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
            TreeSet<String> recorded = new TreeSet<>();
            sums.fieldNames().forEachRemaining(recorded::add);
            assertEquals(recorded, new TreeSet<>(files), "the files AdapterHub loaded");
            for (String f : files) {
                String sum = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(out.resolve(f))));
                assertEquals(sums.get(f).asText(), sum, f + ": not the bytes AdapterHub loaded");
            }
            assertEquals(0, record.get("missing_keys").size(), "AdapterHub's missing keys " + record.get("missing_keys"));
            assertEquals(0, record.get("unexpected_keys").size(), "AdapterHub's unexpected keys");
            try (SafeTensorsFile st = SafeTensorsFile.open(out.resolve(AdapterHubFormat.WEIGHTS_FILE))) {
                assertTrue(st.names().stream().allMatch(k -> k.contains(".adapters.bn.")), "AdapterHub key names: " + st.names());
            }
            NDArray theirs = AdapterHubCases.logits(m, "roundtrip", name + ".json", "adapter_logits");
            double diff = Fixtures.maxAbsDiff(ours, theirs);
            System.out.printf("parity adapterhub loads peft4j-written %s max|diff| = %.3g%n", name, diff);
            assertTrue(diff < 1e-4, name + ": AdapterHub's logits of the peft4j-written adapter differ by " + diff);
        }
    }

    /** Pfeiffer at both sites without the model's residual (AdapterHub's advice: residual_before_ln false). */
    static BottleneckConfig seq() {
        return BottleneckConfig.seqBn().mhAdapter(true).originalLnAfter(false).residualBeforeLn(false);
    }

    static BottleneckConfig par() {
        return BottleneckConfig.parBn().mhAdapter(true).originalLnAfter(false).scaling("learned");
    }

    /** Random adapter values N(0, 0.1) on top of the init (without the model's residual, larger ones saturate). */
    static void randomise(PeftModel peft, String name, long seed) {
        NDManager m = peft.model().manager();
        m.getEngine().setRandomSeed((int) seed);
        for (Param p : peft.adapter(name).parameters().values()) {
            p.set(p.array().add(m.randomNormal(0f, 0.1f, p.shape(), p.array().getDataType())));
        }
    }

    private static NDArray loss(PeftModel peft, NDArray ids, NDArray r) {
        // summed in float64 (a gradient-keeping cast), so the differences see less rounding of the sum
        NDArray l = io.github.peft4j.nn.Ops.cast(peft.forward(ModelInput.of(ids, null)).logits(), ai.djl.ndarray.types.DataType.FLOAT64);
        return l.mul(io.github.peft4j.nn.Ops.cast(r, ai.djl.ndarray.types.DataType.FLOAT64)).sum();
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert:seq", "bert:par", "gpt2:seq", "llama:par"})
    void gradientsMatchFiniteDifferences(String c) {
        String[] parts = c.split(":");
        try (TransformerModel model = BottleneckAdapterTest.tiny(parts[0]); NDManager m = NDManager.newBaseManager()) {
            model.manager().getEngine().setRandomSeed(3);
            PeftModel peft = PeftModel.wrap(model);
            // gelu: smooth, so central differences see no ReLU kink. The parallel case keeps the feed-forward end as the
            // model's: with neither residual nor norm in any sub-block the logits curve too fast for a 1e-2 step.
            peft.addAdapter("a", ("seq".equals(parts[1]) ? seq() : par().outputAdapter(false)).nonLinearity("gelu"));
            randomise(peft, "a", 5);
            NDArray ids = TinyModels.ids(m, 2, 6, 9);
            NDArray r = m.randomNormal(peft.forward(ModelInput.of(ids, null)).logits().getShape());
            Map<String, Param> params = peft.adapter("a").parameters();
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(loss(peft, ids, r));
            }
            double worst = 0;
            int checked = 0;
            for (Map.Entry<String, Param> e : params.entrySet()) {
                Param p = e.getValue();
                float[] analytic = p.array().getGradient().toFloatArray();
                Random pick = new Random(e.getKey().hashCode());
                for (int t = 0; t < 2; t++) {
                    int i = pick.nextInt(analytic.length);
                    double numeric = TinyModels.finiteDifference(p, i, 1e-2f, () -> loss(peft, ids, r).getDouble());
                    double err = Math.abs(numeric - analytic[i]) / Math.max(1e-1, Math.abs(numeric) + Math.abs(analytic[i]));
                    worst = Math.max(worst, err);
                    checked++;
                }
            }
            System.out.printf("bottleneck grad original_ln_after false %s: %d elements of %d tensors, max rel err = %.3g%n",
                    c, checked, params.size(), worst);
            assertTrue(worst < 2e-2, c + ": max relative error " + worst);
        }
    }

    /** A mixed batch: rows of a finishing adapter, of a standard one and of the base each get their own end. */
    @ParameterizedTest
    @ValueSource(strings = {"bert", "gpt2"})
    void mixedBatchRowsEqualEachRowAlone(String arch) {
        try (TransformerModel model = BottleneckAdapterTest.tiny(arch); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", seq());
            randomise(peft, "a", 1);
            peft.addAdapter("b", BottleneckConfig.seqBn());
            randomise(peft, "b", 2);
            // parallel at the attention only: with neither residual nor norm in both sub-blocks, BERT amplifies the
            // float rounding of a row subset's matmuls to ~4e-5
            peft.addAdapter("c", par().outputAdapter(false));
            randomise(peft, "c", 3);
            NDArray ids = TinyModels.ids(m, 4, 5, 4);
            List<String> rows = List.of("a", CallContext.BASE, "b", "c");
            NDArray mixed = peft.forward(ModelInput.of(ids, null).withContext(CallContext.rowAdapters(rows))).logits();
            double worst = 0;
            for (int i = 0; i < rows.size(); i++) {
                NDArray one;
                if (CallContext.BASE.equals(rows.get(i))) {
                    peft.setActive();
                } else {
                    peft.setActive(rows.get(i));
                }
                one = peft.forward(ModelInput.of(ids.get(i + ":" + (i + 1)), null)).logits();
                worst = Math.max(worst, Fixtures.maxAbsDiff(mixed.get(i + ":" + (i + 1)), one));
            }
            System.out.printf("bottleneck original_ln_after false mixed batch %s max|diff| = %.3g%n", arch, worst);
            assertTrue(worst < 1e-5, "mixed batch vs each row alone: " + worst);
        }
    }

    /** With gradient checkpointing the recomputed blocks finish the same way: one SGD step gives the same weights. */
    @ParameterizedTest
    @ValueSource(strings = {"bert", "llama"})
    void gradientCheckpointingGivesThePlainStep(String arch) {
        int[] plainCalls = {0};
        int[] ckptCalls = {0};
        Map<String, float[]> plain = oneStep(arch, false, plainCalls);
        Map<String, float[]> ckpt = oneStep(arch, true, ckptCalls);
        assertEquals(2, plainCalls[0], arch + ": one call per block");
        assertEquals(4, ckptCalls[0], arch + ": forward and recomputation");
        assertEquals(plain.keySet(), ckpt.keySet());
        double worst = 0;
        for (String k : plain.keySet()) {
            float[] a = plain.get(k);
            float[] b = ckpt.get(k);
            for (int i = 0; i < a.length; i++) {
                worst = Math.max(worst, Math.abs(a[i] - b[i]));
            }
        }
        System.out.printf("bottleneck original_ln_after false gradient checkpointing %s: max|diff| after a step = %.2e%n",
                arch, worst);
        assertTrue(worst <= 1e-6, arch + ": max|diff| " + worst);
    }

    private static Map<String, float[]> oneStep(String arch, boolean checkpoint, int[] calls) {
        Random r = new Random(5);
        List<Example> data = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            int[] ids = new int[6];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            data.add("bert".equals(arch) ? Example.classified(ids, i % 3) : Example.tokens(ids));
        }
        try (TransformerModel model = "bert".equals(arch) ? TinyModels.bert(TaskType.SEQ_CLS) : TinyModels.llama();
                Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", seq());
            randomise(peft, "a", 7);
            for (int i = 0; i < model.numLayers(); i++) { // counts the blocks run: recomputation runs them again
                model.site(SiteRole.FFN_OUTPUT, i).install("count", (in, out, residual) -> {
                    calls[0]++;
                    return out;
                });
            }
            Map<String, float[]> before = new TreeMap<>();
            peft.adapter("a").parameters().forEach((k, p) -> before.put(k, p.array().toFloatArray()));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd).optLearningRate(0.5)
                    .optMaxSteps(1).optBatchSize(4).optShuffle(false).optMaxGradNorm(0).optGradientCheckpointing(checkpoint)
                    .build()) {
                t.train();
            }
            Map<String, float[]> after = new TreeMap<>();
            peft.adapter("a").parameters().forEach((k, p) -> after.put(k, p.array().toFloatArray()));
            boolean moved = after.entrySet().stream().anyMatch(e -> !java.util.Arrays.equals(e.getValue(), before.get(e.getKey())));
            assertTrue(moved, arch + ": the step must change the adapter");
            return after;
        }
    }
}
