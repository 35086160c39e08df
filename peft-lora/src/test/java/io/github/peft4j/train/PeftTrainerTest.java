package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.Example;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** PeftTrainer with LoRA on tiny models: HF parity, accumulation, exact resume, evaluation and early stopping. */
class PeftTrainerTest {
    static final Path PARITY = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");

    /** Reads the fixture's pre-tokenized records (the test's own reader; the CLI test uses the data helper's). */
    static List<Example> records(Path file) throws IOException {
        ObjectMapper json = new ObjectMapper();
        List<Example> out = new ArrayList<>();
        for (String line : Files.readAllLines(file)) {
            JsonNode n = json.readTree(line);
            out.add(new Example(ints(n.get("input_ids")), ints(n.get("attention_mask")), ints(n.get("labels")), -1));
        }
        return out;
    }

    private static int[] ints(JsonNode n) {
        if (n == null) {
            return null;
        }
        int[] v = new int[n.size()];
        for (int i = 0; i < v.length; i++) {
            v[i] = n.get(i).asInt();
        }
        return v;
    }

    /** Random causal-LM examples of lengths 5..12, some with the first tokens masked out of the loss. */
    static List<Example> randomExamples(int n, long seed) {
        Random r = new Random(seed);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[5 + r.nextInt(8)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            if (i % 3 == 0) {
                int[] labels = ids.clone();
                labels[0] = Example.IGNORE;
                labels[1] = Example.IGNORE;
                out.add(Example.labelled(ids, labels));
            } else {
                out.add(Example.tokens(ids));
            }
        }
        return out;
    }

    /** A tiny Llama with a LoRA adapter whose A and B are both random (same values for the same seed). */
    static PeftModel loraLlama(TransformerModel model, double dropout) {
        PeftModel peft = PeftModel.wrap(model);
        Engine.getInstance().setRandomSeed(11);
        peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).loraDropout(dropout).initLoraWeights(false)
                .targetModules("q_proj", "v_proj"));
        return peft;
    }

    @Test
    void fiveSgdStepsGiveHfPeftsLosses() throws IOException {
        JsonNode expected = new ObjectMapper().readTree(PARITY.resolve("losses.json").toFile());
        try (TransformerModel model = Models.load(PARITY.resolve("base"), Device.cpu(), DataType.FLOAT32, null);
                Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(PARITY.resolve("adapter"), PeftModel.DEFAULT, true);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(records(PARITY.resolve("data.jsonl")))
                    .optOptimizer(sgd).optLearningRate(0.1).optMaxSteps(5).optBatchSize(2).optShuffle(false)
                    .optMaxGradNorm(expected.get("max_grad_norm").asDouble()).build()) {
                List<Double> losses = t.train().losses();
                assertEquals(5, losses.size());
                double worst = 0;
                for (int i = 0; i < 5; i++) {
                    assertEquals(expected.get("losses").get(i).asDouble(), losses.get(i), 1e-4, "step " + (i + 1));
                    worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - losses.get(i)));
                }
                System.out.printf("parity train-sgd 5 steps losses %s max|diff| = %.2e%n", losses, worst);
            }
        }
    }

    @Test
    void accumulatingTwoBatchesOfTwoEqualsOneBatchOfFour() {
        List<Example> data = randomExamples(4, 5);
        Map<String, float[]> big = oneStep(data, 4, 1);
        Map<String, float[]> accumulated = oneStep(data, 2, 2);
        double maxDiff = 0;
        double maxMove = 0;
        Map<String, float[]> before = oneStep(data, 4, 0);
        for (String k : big.keySet()) {
            for (int i = 0; i < big.get(k).length; i++) {
                maxDiff = Math.max(maxDiff, Math.abs(big.get(k)[i] - accumulated.get(k)[i]));
                maxMove = Math.max(maxMove, Math.abs(big.get(k)[i] - before.get(k)[i]));
            }
        }
        assertTrue(maxMove > 1e-3, "the step moved the weights by " + maxMove);
        assertTrue(maxDiff < 1e-6, "accumulated vs big batch: " + maxDiff);
    }

    /** Trainable weights after one SGD step (lr 0.5, no clipping), or the initial ones when accumulation is 0. */
    private static Map<String, float[]> oneStep(List<Example> data, int batch, int accumulation) {
        try (TransformerModel model = TinyModels.llama(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = loraLlama(model, 0);
            if (accumulation > 0) {
                try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                        .optLearningRate(0.5).optMaxSteps(1).optBatchSize(batch).optGradientAccumulation(accumulation)
                        .optShuffle(false).optMaxGradNorm(0).build()) {
                    t.train();
                }
            }
            Map<String, float[]> out = new java.util.TreeMap<>();
            peft.trainableParameters().forEach((k, p) -> out.put(k, p.array().toFloatArray()));
            return out;
        }
    }

    @Test
    void resumedRunRepeatsTheUninterruptedLossCurve(@TempDir Path dir) {
        List<Example> data = randomExamples(14, 8);
        List<Double> full = run(data, dir.resolve("full"), null, -1);
        List<Double> first = run(data, dir.resolve("cut"), null, 6);
        Path out = dir.resolve("cut");
        assertEquals(List.of(out.resolve("checkpoint-3"), out.resolve("checkpoint-6")), PeftTrainer.checkpoints(out));
        for (String f : List.of("adapter_config.json", "adapter_model.safetensors", PeftTrainer.OPTIMIZER_FILE, TrainerState.FILE)) {
            assertTrue(Files.isRegularFile(out.resolve("checkpoint-6").resolve(f)), f);
        }
        TrainerState st = TrainerState.read(out.resolve("checkpoint-6"));
        assertEquals(6, st.globalStep());
        assertEquals(1, st.epoch()); // 14 examples, batch 3: 5 batches per epoch
        assertEquals(1, st.batchInEpoch());
        List<Double> rest = run(data, out, out.resolve("checkpoint-6"), -1);
        assertEquals(10, full.size());
        assertEquals(6, first.size());
        assertEquals(4, rest.size());
        List<Double> joined = new ArrayList<>(first);
        joined.addAll(rest);
        for (int i = 0; i < 10; i++) {
            assertEquals(full.get(i), joined.get(i), 1e-6, "step " + (i + 1) + " of " + full + " vs " + joined);
        }
        assertNotEquals(full.get(0), full.get(9), 1e-3);
        // keep the last 2
        assertEquals(List.of(out.resolve("checkpoint-9"), out.resolve("checkpoint-10")), PeftTrainer.checkpoints(out));
        assertTrue(Files.isRegularFile(out.resolve(PeftTrainer.METRICS)));
    }

    /** AdamW (weight decay 0.01), warmup 2 + cosine over 10 steps, shuffle, LoRA dropout 0.1; optionally stopped. */
    private static List<Double> run(List<Example> data, Path out, Path resume, int stopAt) {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = loraLlama(model, 0.1);
            PeftTrainer[] self = new PeftTrainer[1];
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(5e-3)
                    .optWeightDecay(0.01).optScheduler(LrSchedule.Kind.COSINE).optWarmupSteps(2).optMaxSteps(10)
                    .optBatchSize(3).optSeed(3).optOutputDir(out).optCheckpointEvery(3).optResumeFrom(resume)
                    .optStepListener(s -> {
                        if (s.step() == stopAt) {
                            self[0].requestStop();
                        }
                    }).build()) {
                self[0] = t;
                return t.train().losses();
            }
        }
    }

    @Test
    void dropoutIsReproducibleAfterReseedingLibtorch() {
        List<Example> data = randomExamples(6, 2);
        List<Double> a = run(data, null, null, 3);
        List<Double> b = run(data, null, null, 3);
        assertEquals(a, b);
    }

    @Test
    void earlyStoppingKeepsTheBestAdapterAndClassificationMetrics(@TempDir Path dir) throws IOException {
        List<Example> train = new ArrayList<>();
        Random r = new Random(1);
        for (int i = 0; i < 12; i++) {
            int[] ids = new int[4 + r.nextInt(4)];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            train.add(Example.classified(ids, i % 3));
        }
        try (TransformerModel model = TinyModels.bert(TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(2).targetModules("query", "value"));
            // lr 0: the evaluation never improves, so patience 2 ends the run after the third evaluation
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(train).optEvalData(train)
                    .optLearningRate(0).optMaxSteps(20).optBatchSize(4).optEvalEvery(1).optEarlyStopping("accuracy", 2)
                    .optOutputDir(dir).build()) {
                PeftTrainer.TrainResult res = t.train();
                assertTrue(res.stoppedEarly());
                assertEquals(3, res.steps());
                assertEquals(1, res.bestStep());
                Map<String, Double> ev = res.lastEval();
                assertEquals(List.of("loss", "accuracy", "macro_f1"), List.copyOf(ev.keySet()));
                // the accuracy is a multiple of 1/12 and equals the early-stopping metric's best value
                assertEquals(Math.round(ev.get("accuracy") * 12) / 12.0, ev.get("accuracy"), 1e-12);
                assertEquals(ev.get("accuracy"), res.bestMetric(), 0);
            }
            assertTrue(Files.isRegularFile(dir.resolve("best/adapter_model.safetensors")));
            assertTrue(Files.isRegularFile(dir.resolve(PeftTrainer.CHART)));
            assertEquals(3, Files.readAllLines(dir.resolve(PeftTrainer.METRICS)).size());
        }
    }

    @Test
    void tokenClassificationReportsEntityF1(@TempDir Path dir) {
        List<String> names = List.of("O", "B-PER", "I-PER");
        List<Example> data = new ArrayList<>();
        Random r = new Random(4);
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[6];
            int[] labels = new int[6];
            for (int j = 0; j < 6; j++) {
                ids[j] = 1 + r.nextInt(127);
                labels[j] = j == 0 ? Example.IGNORE : j == 2 ? 1 : j == 3 ? 2 : 0;
            }
            data.add(Example.labelled(ids, labels));
        }
        try (TransformerModel model = TinyModels.bert(TaskType.TOKEN_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(4).targetModules("query", "value"));
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optEvalData(data)
                    .optLearningRate(1e-2).optEpochs(60).optBatchSize(4).optLabelNames(names).build()) {
                Map<String, Double> before = t.evaluate(data);
                PeftTrainer.TrainResult res = t.train();
                Map<String, Double> after = res.lastEval();
                assertEquals(List.of("loss", "accuracy", "macro_f1", "entity_f1"), List.copyOf(after.keySet()));
                assertTrue(after.get("loss") < before.get("loss"), before + " -> " + after);
                // the pattern is position-only and easy: training learns it completely
                assertEquals(1.0, after.get("entity_f1"), 0, after.toString());
                assertEquals(1.0, after.get("accuracy"), 0);
                assertTrue(res.losses().get(res.losses().size() - 1) < res.losses().get(0));
                assertFalse(res.stoppedEarly());
            }
        }
    }
}
