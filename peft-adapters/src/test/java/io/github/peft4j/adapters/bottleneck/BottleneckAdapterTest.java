package io.github.peft4j.adapters.bottleneck;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Bottleneck adapters on tiny random models: gradients, training, rows of a mixed batch, config checks. */
class BottleneckAdapterTest {
    static TransformerModel tiny(String arch) {
        return switch (arch) {
            case "bert" -> TinyModels.bert(TaskType.SEQ_CLS);
            case "gpt2" -> TinyModels.gpt2();
            default -> TinyModels.llama();
        };
    }

    /** A config per case: every computation path once. */
    static BottleneckConfig config(String kind) {
        return switch (kind) {
            case "seq_bn" -> BottleneckConfig.seqBn();
            case "double_seq_bn" -> BottleneckConfig.doubleSeqBn();
            case "par_bn" -> BottleneckConfig.parBn().scaling("learned");
            default -> BottleneckConfig.seqBn().mhAdapter(true).lnBefore(true).lnAfter(true).useGating(true)
                    .scaling("channel").residualBeforeLn("post_add").nonLinearity("gelu");
        };
    }

    /** Random adapter values (the inits are near zero or zero), fixed by the seed. */
    static void randomise(PeftModel peft, String name, long seed) {
        NDManager m = peft.model().manager();
        m.getEngine().setRandomSeed((int) seed);
        for (Param p : peft.adapter(name).parameters().values()) {
            NDArray v = p.array().add(m.randomNormal(0f, 0.3f, p.shape(), p.array().getDataType()));
            p.set(v);
        }
    }

    private static NDArray loss(PeftModel peft, NDArray ids, NDArray r) {
        return peft.forward(ModelInput.of(ids, null)).logits().mul(r).sum();
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert:seq_bn", "bert:custom", "gpt2:double_seq_bn", "gpt2:custom", "llama:par_bn", "llama:custom"})
    void gradientsMatchFiniteDifferences(String c) {
        String[] parts = c.split(":");
        try (TransformerModel model = tiny(parts[0]); NDManager m = NDManager.newBaseManager()) {
            model.manager().getEngine().setRandomSeed(3);
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", config(parts[1]));
            randomise(peft, "a", 5);
            NDArray ids = TinyModels.ids(m, 2, 6, 9);
            NDArray logits0 = peft.forward(ModelInput.of(ids, null)).logits();
            NDArray r = m.randomNormal(logits0.getShape());
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
                    double numeric = TinyModels.finiteDifference(p, i, 1e-2f, () -> (double) loss(peft, ids, r).getFloat());
                    double err = Math.abs(numeric - analytic[i]) / Math.max(1e-1, Math.abs(numeric) + Math.abs(analytic[i]));
                    worst = Math.max(worst, err);
                    checked++;
                }
            }
            System.out.printf("bottleneck grad %s: %d elements of %d tensors, max rel err = %.3g%n", c, checked,
                    params.size(), worst);
            assertTrue(worst < 2e-2, c + ": max relative error " + worst);
        }
    }

    @Test
    void trainingPfeifferOnBertLowersTheLoss() {
        List<Example> data = new ArrayList<>();
        Random r = new Random(1);
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[6];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            data.add(Example.classified(ids, i % 3));
        }
        try (TransformerModel model = tiny("bert"); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", BottleneckConfig.seqBn());
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.05).optEpochs(15).optBatchSize(8).optShuffle(false).build()) {
                List<Double> losses = t.train().losses();
                System.out.printf("bottleneck train bert seq_bn: loss %.4f -> %.4f over %d steps%n", losses.get(0),
                        losses.get(losses.size() - 1), losses.size());
                assertTrue(losses.get(losses.size() - 1) < 0.8 * losses.get(0), "losses " + losses);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert", "llama"})
    void mixedBatchRowsEqualEachRowAlone(String arch) {
        try (TransformerModel model = tiny(arch); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", BottleneckConfig.seqBn());
            randomise(peft, "a", 1);
            peft.addAdapter("b", BottleneckConfig.parBn());
            randomise(peft, "b", 2);
            NDArray ids = TinyModels.ids(m, 3, 5, 4);
            List<String> rows = List.of("b", CallContext.BASE, "a");
            NDArray mixed = peft.forward(ModelInput.of(ids, null).withContext(CallContext.rowAdapters(rows))).logits();
            double worst = 0;
            for (int i = 0; i < rows.size(); i++) {
                NDArray one;
                if (CallContext.BASE.equals(rows.get(i))) {
                    try (AutoCloseable off = peft.disabled()) {
                        one = peft.forward(ModelInput.of(ids.get(i + ":" + (i + 1)), null)).logits();
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                } else {
                    peft.setActive(rows.get(i));
                    one = peft.forward(ModelInput.of(ids.get(i + ":" + (i + 1)), null)).logits();
                }
                worst = Math.max(worst, Fixtures.maxAbsDiff(mixed.get(i + ":" + (i + 1)), one));
            }
            System.out.printf("bottleneck mixed batch %s max|diff| = %.3g%n", arch, worst);
            assertTrue(worst < 1e-5, "mixed batch vs each row alone: " + worst);
        }
    }

    @Test
    void configsAreCheckedWithTheKeyNamed() {
        try (TransformerModel model = tiny("gpt2")) {
            PeftModel peft = PeftModel.wrap(model);
            assertEquals("stochastic_depth", msgKey(peft, BottleneckConfig.seqBn(), "stochastic_depth",
                    c -> c.stochasticDepth = 0.1));
            assertEquals("non_linearity", msgKey(peft, BottleneckConfig.seqBn().nonLinearity("mish"), "non_linearity", c -> {}));
            assertEquals("scaling", msgKey(peft, BottleneckConfig.seqBn().scaling("vector"), "scaling", c -> {}));
            assertEquals("leave_out", msgKey(peft, BottleneckConfig.seqBn().leaveOut(List.of(0, 1)), "leave_out", c -> {}));
            assertEquals("leave_out", msgKey(peft, BottleneckConfig.seqBn().leaveOut(List.of(5)), "leave_out", c -> {}));
            assertEquals("phm_layer", msgKey(peft, BottleneckConfig.seqBn(), "phm_layer", c -> c.phmLayer = true));
            assertEquals("reduction_factor", msgKey(peft, BottleneckConfig.seqBn().reductionFactor(Map.of("0", 4)),
                    "reduction_factor", c -> {}));
            assertThrows(PeftException.class, () -> BottleneckConfig.preset("lora"));
            assertTrue(peft.adapterNames().isEmpty(), "a refused config leaves no adapter behind");
        }
    }

    private static String msgKey(PeftModel peft, BottleneckConfig c, String key, java.util.function.Consumer<BottleneckConfig> edit) {
        edit.accept(c);
        PeftException e = assertThrows(PeftException.class, () -> peft.addAdapter("x", c));
        assertTrue(e.getMessage().contains(key), e.getMessage());
        return key;
    }

    @Test
    void theTrainableReportCountsAdapterHubsParameters() {
        try (TransformerModel model = tiny("bert")) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", BottleneckConfig.doubleSeqBn()); // hidden 64 / 16 = 4: per block 64*4+4+4*64+64
            long perBlock = 64 * 4 + 4 + 4 * 64 + 64;
            long adapter = peft.adapter("a").parameters().values().stream().mapToLong(Param::numel).sum();
            assertEquals(2 * 2 * perBlock, adapter);
            assertArrayEquals(new String[] {"bert.encoder.layer.0.attention.output.adapters.a.adapter_down.0.weight"},
                    peft.adapter("a").parameters().keySet().stream().limit(1).toArray(String[]::new));
        }
    }

    /** AdapterHub's inits: bert N(0, 0.02) with zero biases, mam_adapter zero up-projection, houlsby N(0, 0.01) in ±0.02. */
    @Test
    void initsFollowAdapterHub() {
        try (TransformerModel model = tiny("llama"); NDManager m = NDManager.newBaseManager()) {
            NDArray ids = TinyModels.ids(m, 2, 5, 1);
            float[] plain = model.forward(ModelInput.of(ids, null)).logits().toFloatArray();
            PeftModel peft = PeftModel.wrap(model);
            // hidden 64 / reduction 1 = 64 wide, so the statistics have 4096 draws per matrix
            peft.addAdapter("bert", BottleneckConfig.seqBn().reductionFactor(1));
            peft.addAdapter("mam", BottleneckConfig.parBn());
            peft.addAdapter("houlsby", BottleneckConfig.doubleSeqBn().initWeights("houlsby").reductionFactor(1));
            for (Map.Entry<String, Param> e : peft.adapter("bert").parameters().entrySet()) {
                NDArray v = e.getValue().array();
                if (e.getKey().endsWith("bias")) {
                    assertEquals(0f, v.abs().max().getFloat(), e.getKey());
                } else {
                    double std = Math.sqrt(v.pow(2).mean().getFloat());
                    assertEquals(0.02, std, 0.002, e.getKey() + " std");
                }
            }
            for (Map.Entry<String, Param> e : peft.adapter("mam").parameters().entrySet()) {
                NDArray v = e.getValue().array();
                if (e.getKey().contains("adapter_up") || e.getKey().endsWith("bias")) {
                    assertEquals(0f, v.abs().max().getFloat(), e.getKey());
                } else { // kaiming_uniform(a=sqrt(5)): U(-1/sqrt(64), 1/sqrt(64))
                    assertTrue(v.abs().max().getFloat() <= 0.125f && v.abs().max().getFloat() > 0.1f, e.getKey());
                }
            }
            for (Map.Entry<String, Param> e : peft.adapter("houlsby").parameters().entrySet()) {
                NDArray v = e.getValue().array();
                if (e.getKey().endsWith("weight")) {
                    assertTrue(v.abs().max().getFloat() <= 0.02f, e.getKey() + " exceeds the truncation");
                    double std = Math.sqrt(v.pow(2).mean().getFloat());
                    assertEquals(0.0088, std, 0.001, e.getKey() + " std (N(0, 0.01) truncated at 2 sigma)");
                }
            }
            // a fresh parallel adapter (up-projection zero) leaves the logits exactly as they were
            peft.setActive("mam");
            assertArrayEquals(plain, peft.forward(ModelInput.of(ids, null)).logits().toFloatArray());
        }
    }

    /** The post-residual LayerNorm that {@code original_ln_before} needs exists at BERT's sites only. */
    @Test
    void onlyPostLnModelsOfferTheSitesNorm() {
        try (TransformerModel bert = tiny("bert"); TransformerModel gpt2 = tiny("gpt2"); NDManager m = NDManager.newBaseManager()) {
            for (io.github.peft4j.model.SiteRole role : List.of(io.github.peft4j.model.SiteRole.ATTENTION_OUTPUT,
                    io.github.peft4j.model.SiteRole.FFN_OUTPUT, io.github.peft4j.model.SiteRole.ATTENTION_PARALLEL,
                    io.github.peft4j.model.SiteRole.FFN_PARALLEL)) {
                assertTrue(bert.site(role, 1).hasPostNorm(), role.name());
                assertTrue(!gpt2.site(role, 1).hasPostNorm(), role.name());
            }
            NDArray x = m.randomNormal(new ai.djl.ndarray.types.Shape(1, 3, 64));
            NDArray viaSite = bert.site(io.github.peft4j.model.SiteRole.FFN_OUTPUT, 1).postNorm(x);
            NDArray direct = bert.layer("bert.encoder.layer.1.output.LayerNorm").forward(x);
            assertArrayEquals(direct.toFloatArray(), viaSite.toFloatArray());
            assertThrows(PeftException.class, () -> gpt2.site(io.github.peft4j.model.SiteRole.FFN_OUTPUT, 0).postNorm(x));
        }
    }
}
