package io.github.peft4j.lora.lorahub;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.PretokenizedData;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * LoRAHub on the tiny Llama with three plug-ins: one trained on the few-shot data, two random. The search lowers the
 * few-shot loss below uniform weights, is reproducible with its seed, and its result is an ordinary LoRA adapter that
 * gives the reported loss when loaded back.
 */
class LoraHubTest {
    private static final Path BASE = Fixtures.dir("llama_lora").resolve("base");
    private static final Path DATA = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd/data.jsonl");
    private static final List<String> PLUGINS = List.of("trained", "noise1", "noise2");
    @TempDir
    Path tmp;

    private static LoraConfig config(boolean random) {
        LoraConfig c = new LoraConfig().r(4).loraAlpha(8);
        c.targetModules("q_proj", "v_proj");
        return random ? c.initLoraWeights(false) : c;
    }

    /** The model with the three plug-ins (the first trained 30 AdamW steps on the data). */
    private static PeftModel plugins(TransformerModel base, List<Example> data) {
        PeftModel peft = PeftModel.wrap(base);
        peft.addAdapter("trained", config(false));
        try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(1e-2).optMaxSteps(30)
                .optBatchSize(3).optSeed(3).optLogEvery(0).build()) {
            t.train();
        }
        peft.addAdapter("noise1", config(true));
        peft.addAdapter("noise2", config(true));
        return peft;
    }

    private static double loss(PeftModel peft, List<Example> data) {
        try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optBatchSize(8).build()) {
            return t.evaluate(data).get("loss");
        }
    }

    @Test
    void searchBeatsUniformWeightsIsSeededAndSavesAnOrdinaryAdapter() {
        ai.djl.engine.Engine.getInstance().setRandomSeed(5);
        try (TransformerModel base = Models.load(BASE)) {
            List<Example> data = PretokenizedData.forModel(base, 0, BadLinePolicy.STOP).read(DATA);
            PeftModel peft = plugins(base, data);
            LoraHub hub = LoraHub.builder().setModel(peft).setPlugins(PLUGINS).setExamples(data).optSteps(30).optSeed(1).build();
            LoraHub.Result r = hub.search("hub");
            double uniform = hub.lossAt("uniform", new double[] {1 / 3.0, 1 / 3.0, 1 / 3.0});
            double trainedAlone = hub.lossAt("alone", new double[] {1, 0, 0});
            System.out.printf("LoRAHub tiny: weights %s loss %.5f (objective %.5f, all-zero %.5f, uniform %.5f, trained"
                    + " plug-in alone %.5f), %d evaluations%n", Arrays.toString(r.weights()), r.loss(), r.objective(),
                    r.zeroLoss(), uniform, trainedAlone, r.evaluations());
            assertEquals(30, r.evaluations());
            assertTrue(r.loss() < uniform - 0.05, "search " + r.loss() + " vs uniform " + uniform);
            // A and B are both scaled by w, so a plug-in alone acts with w²: the sign of its weight is free
            assertTrue(Math.abs(r.weights()[0]) > 0.5, "the trained plug-in carries the composition: "
                    + Arrays.toString(r.weights()));
            for (double w : r.weights()) {
                assertTrue(Math.abs(w) <= LoraHub.DEFAULT_BOUND, "bounded: " + w);
            }
            assertEquals(0, r.history().get(0).weights()[0], 0.0, "the search starts at weights 0, as LoRAHub");

            // the hub adapter holds the best composition: its loss is the one reported
            peft.setActive("hub");
            assertEquals(r.loss(), loss(peft, data), 1e-6);
            Path saved = tmp.resolve("hub");
            peft.saveAdapter("hub", saved);

            LoraHub.Result again = LoraHub.builder().setModel(peft).setPlugins(PLUGINS).setExamples(data).optSteps(30)
                    .optSeed(1).build().search("hub2");
            assertArrayEquals(r.weights(), again.weights(), "same seed, same search");

            try (TransformerModel fresh = Models.load(BASE)) {
                PeftModel p2 = PeftModel.wrap(fresh);
                p2.loadAdapter(saved, "hub", true);
                double reloaded = loss(p2, data);
                System.out.printf("LoRAHub tiny: saved adapter reloaded, loss %.6f (reported %.6f)%n", reloaded, r.loss());
                assertEquals(r.loss(), reloaded, 1e-5);
            }
        }
    }

    @Test
    void pluginsMustShareTheirArchitecture() {
        try (TransformerModel base = Models.load(BASE)) {
            List<Example> data = PretokenizedData.forModel(base, 0, BadLinePolicy.STOP).read(DATA);
            PeftModel peft = PeftModel.wrap(base);
            peft.addAdapter("a", config(true));
            peft.addAdapter("b", config(true).r(2));
            PeftException e = assertThrows(PeftException.class, () -> LoraHub.builder().setModel(peft)
                    .setPlugins(List.of("a", "b")).setExamples(data).optSteps(3).build().search("hub"));
            assertTrue(e.getMessage().contains("same architecture"), e.getMessage());
        }
    }
}
