package io.github.peft4j.adapters.unipelt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
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

/** Union adapters (UniPELT, MAM) on tiny random models: gradients of every part and gate, gates, training, checks. */
class UnionAdapterTest {
    static TransformerModel tiny(String arch) {
        return switch (arch) {
            case "bert" -> TinyModels.bert(TaskType.SEQ_CLS);
            case "gpt2" -> TinyModels.gpt2();
            default -> TinyModels.llama();
        };
    }

    /** Every computation path: MLP prefix with one gate, flat prefix with key and value gates, fused and plain LoRA. */
    static UnionConfig config(String kind) {
        return switch (kind) {
            case "unipelt" -> UnionConfig.of(new HubPrefixConfig().prefixLength(3).bottleneckSize(8).useGating(true),
                    BottleneckConfig.seqBn().useGating(true), new HubLoraConfig().rank(2, 2).useGating(true));
            case "mam" -> UnionConfig.of(new HubPrefixConfig().prefixLength(3).bottleneckSize(8), BottleneckConfig.parBn());
            default -> UnionConfig.of(new HubPrefixConfig().prefixLength(2).flat(true).useGating(true).sharedGating(false)
                            .leaveOut(List.of(0)),
                    BottleneckConfig.doubleSeqBnInv().useGating(true),
                    new HubLoraConfig().rank(2, 4).attnMatrices(List.of("q", "k", "v")).locations(true, true, true)
                            .useGating(true).leaveOut(List.of(1)))
                    .gatePositions(Gate.Positions.ATTENDED);
        };
    }

    static void randomise(PeftModel peft, String name, long seed) {
        NDManager m = peft.model().manager();
        m.getEngine().setRandomSeed((int) seed);
        for (Param p : peft.adapter(name).parameters().values()) {
            p.set(p.array().add(m.randomNormal(0f, 0.3f, p.shape(), p.array().getDataType())));
        }
    }

    private static NDArray loss(PeftModel peft, NDArray ids, NDArray mask, NDArray r) {
        return peft.forward(ModelInput.of(ids, mask)).logits().mul(r).sum();
    }

    @ParameterizedTest
    @ValueSource(strings = {"bert:unipelt", "bert:custom", "gpt2:mam", "gpt2:custom", "llama:mam", "llama:custom"})
    void gradientsOfEveryPartAndGateMatchFiniteDifferences(String c) {
        String[] parts = c.split(":");
        try (TransformerModel model = tiny(parts[0]); NDManager m = NDManager.newBaseManager()) {
            model.manager().getEngine().setRandomSeed(3);
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("a", config(parts[1]));
            randomise(peft, "a", 5);
            NDArray ids = TinyModels.ids(m, 2, 6, 9);
            NDArray mask = m.create(new long[][] {{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}}); // padding: attended gates differ
            NDArray r = m.randomNormal(peft.forward(ModelInput.of(ids, mask)).logits().getShape());
            Map<String, Param> params = peft.adapter("a").parameters();
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(loss(peft, ids, mask, r));
            }
            double worst = 0;
            int checked = 0;
            for (Map.Entry<String, Param> e : params.entrySet()) {
                Param p = e.getValue();
                float[] analytic = p.array().getGradient().toFloatArray();
                Random pick = new Random(e.getKey().hashCode());
                int i = pick.nextInt(analytic.length);
                double numeric = TinyModels.finiteDifference(p, i, 1e-2f, () -> {
                    try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                        return (double) loss(peft, ids, mask, r).getFloat();
                    }
                });
                double err = Math.abs(numeric - analytic[i]) / Math.max(1e-1, Math.abs(numeric) + Math.abs(analytic[i]));
                if (err > 2e-2) {
                    System.out.printf("union grad %s: %s[%d] numeric %.5g analytic %.5g%n", c, e.getKey(), i, numeric, analytic[i]);
                }
                worst = Math.max(worst, err);
                checked++;
            }
            System.out.printf("union grad %s: %d elements of %d tensors, max rel err = %.3g%n", c, checked, params.size(), worst);
            assertTrue(worst < 2e-2, c + ": max relative error " + worst);
            assertTrue(parts[1].equals("mam") || params.keySet().stream().anyMatch(k -> k.contains("gate")), "gates are checked");
        }
    }

    /**
     * With {@code gate_positions: "attended"} a right-padded row gives the logits it gives alone without padding (the
     * gates ignore padding); with AdapterHub's {@code "all"} the padding moves them.
     */
    @ParameterizedTest
    @ValueSource(strings = {"bert", "llama"})
    void attendedGatesIgnorePaddingAndAdapterHubsDoNot(String arch) {
        try (TransformerModel model = tiny(arch); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            UnionConfig all = config("unipelt");
            peft.addAdapter("all", all);
            randomise(peft, "all", 7);
            UnionConfig attended = PeftModelCopy.of(all).gatePositions(Gate.Positions.ATTENDED);
            peft.addAdapter("attended", attended);
            // the same values in both adapters
            Map<String, Param> src = peft.adapter("all").parameters();
            peft.adapter("attended").parameters().forEach((k, p) -> p.set(src.get(k.replace(".attended", ".all")).array().duplicate()));
            NDArray alone = TinyModels.ids(m, 1, 4, 3);
            NDArray padded = alone.concat(m.zeros(new ai.djl.ndarray.types.Shape(1, 3), alone.getDataType()), 1);
            NDArray mask = m.create(new long[][] {{1, 1, 1, 1, 0, 0, 0}});
            double[] moved = new double[2];
            int i = 0;
            for (String a : List.of("attended", "all")) {
                peft.setActive(a);
                NDArray x = peft.forward(ModelInput.of(alone, null)).logits();
                NDArray y = peft.forward(ModelInput.of(padded, mask)).logits();
                if (arch.equals("llama")) {
                    y = y.get(":, :4, :");
                }
                moved[i++] = Fixtures.maxAbsDiff(x, y);
            }
            System.out.printf("union gates %s: padding moves logits by %.3g (attended) and %.3g (all, AdapterHub)%n", arch,
                    moved[0], moved[1]);
            assertTrue(moved[0] < 1e-5, "attended gates: " + moved[0]);
            assertTrue(moved[1] > 1e-4, "AdapterHub's gates average over the padding too: " + moved[1]);
        }
    }

    /** A copy of a config through JSON (configs are values). */
    static final class PeftModelCopy {
        static UnionConfig of(UnionConfig c) {
            return io.github.peft4j.peft.PeftMethods.copy(c);
        }
    }

    @Test
    void trainingUniPeltOnBertLowersTheLoss() {
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
            peft.addAdapter("a", UnionConfig.uniPelt());
            long trainable = peft.adapter("a").parameters().values().stream().mapToLong(Param::numel).sum();
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.05).optEpochs(15).optBatchSize(8).optShuffle(false).build()) {
                List<Double> losses = t.train().losses();
                System.out.printf("union train bert unipelt (%d adapter parameters): loss %.4f -> %.4f over %d steps%n",
                        trainable, losses.get(0), losses.get(losses.size() - 1), losses.size());
                assertTrue(losses.get(losses.size() - 1) < 0.8 * losses.get(0), "losses " + losses);
            }
        }
    }

    @Test
    void unionsAreCheckedAndARefusedOneLeavesNothingBehind() {
        try (TransformerModel model = tiny("gpt2"); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            NDArray ids = TinyModels.ids(m, 1, 4, 2);
            float[] plain = peft.forward(ModelInput.of(ids, null)).logits().toFloatArray();
            assertMessage(() -> peft.addAdapter("x", UnionConfig.of(BottleneckConfig.seqBn(), BottleneckConfig.parBn())),
                    "cannot be combined");
            assertMessage(() -> peft.addAdapter("x", UnionConfig.of(new HubPrefixConfig(), new HubPrefixConfig())),
                    "a second prefix_tuning");
            // the prefix and bottleneck parts attach, then the LoRA part is refused: nothing of "x" stays
            assertMessage(() -> peft.addAdapter("x", UnionConfig.of(new HubPrefixConfig().prefixLength(2).bottleneckSize(4),
                    BottleneckConfig.seqBn(), new HubLoraConfig().leaveOut(List.of(0, 1)))), "targets no module");
            assertMessage(() -> peft.addAdapter("x", new UnionConfig()), "needs 'configs'");
            assertMessage(() -> peft.addAdapter("x", UnionConfig.uniPelt().gatePositions(null).add(new HubLoraConfig())),
                    "a second lora");
            assertTrue(peft.adapterNames().isEmpty(), "refused unions leave no adapter: " + peft.adapterNames());
            assertEquals(List.of(), model.site(io.github.peft4j.model.SiteRole.KV_PREFIX, 0).owners(), "no prefix left");
            assertEquals(0, Fixtures.maxAbsDiff(m.create(plain), peft.forward(ModelInput.of(ids, null)).logits().flatten()));
            peft.addAdapter("u", UnionConfig.uniPelt());
            assertMessage(() -> peft.forward(ModelInput.of(ids.concat(ids, 0), null)
                    .withContext(CallContext.rowAdapters(List.of("u", CallContext.BASE)))), "u");
        }
    }

    private static void assertMessage(org.junit.jupiter.api.function.Executable call, String part) {
        PeftException e = assertThrows(PeftException.class, call);
        assertTrue(e.getMessage().contains(part), "message '" + e.getMessage() + "' lacks '" + part + "'");
    }
}
