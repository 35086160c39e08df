package io.github.peft4j.lora.adalora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks.TrainingStep;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AdaLoRA with the trainer's checkpoints (the allocator's importance averages and mask travel in
 * {@code optimizer.safetensors}, so a resumed run is bit-identical to an uninterrupted one) and HF's evaluation loss
 * (task loss plus the orthogonal regulariser).
 */
class AdaLoraResumeTest {
    @TempDir
    Path tmp;

    /** What a run ends with. */
    private record Run(List<Double> losses, Map<String, List<Boolean>> pattern, Map<String, float[]> weights) {}

    private static Run run(Path out, Path resume, int stopAt) {
        try (TransformerModel model = TinyModels.llama(); AdamW adamw = AdamW.builder().weightDecay(0.01).build()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(5);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.addAdapter("default", new AdaLoraConfig().initR(4).targetR(2).tinit(5)
                    .tfinal(4).deltaT(2).totalStep(16).loraDropout(0.1).targetModules("q_proj", "v_proj", "o_proj"));
            PeftTrainer[] self = new PeftTrainer[1];
            List<Double> losses;
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(AdaLoraTest.data(10, 4)).optOptimizer(adamw)
                    .optLearningRate(0.02).optMaxSteps(16).optBatchSize(3).optSeed(3).optOutputDir(out)
                    .optCheckpointEvery(5).optResumeFrom(resume).optStepListener(s -> {
                        if (s.step() == stopAt) {
                            self[0].requestStop();
                        }
                    }).build()) {
                self[0] = t;
                losses = t.train().losses();
            }
            Map<String, float[]> w = new LinkedHashMap<>();
            peft.trainableParameters().forEach((k, p) -> w.put(k, p.array().toFloatArray()));
            return new Run(losses, a.rankPattern(), w);
        }
    }

    /**
     * Interrupted at step 10 (masks at steps 6, 8, 10; the final mask at step 12 needs the averages of steps 1-11)
     * and resumed from checkpoint-10: the same losses, rank pattern and weights, bit for bit. checkpoint-5 (averages,
     * no mask yet) without the allocator state resumes differently, so the state is what makes it exact.
     */
    @Test
    void aResumedRunIsBitIdenticalIncludingTheRankPattern() throws Exception {
        Run full = run(tmp.resolve("full"), null, -1);
        Path cut = tmp.resolve("cut");
        Run first = run(cut, null, 10);
        Path ckpt = cut.resolve("checkpoint-10");
        List<String> stateKeys = new ArrayList<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(ckpt.resolve(PeftTrainer.OPTIMIZER_FILE))) {
            for (String k : f.names()) {
                if (k.startsWith("hook_state.")) {
                    stateKeys.add(k);
                }
            }
        }
        // 3 modules x 2 layers x (A, E, B) x (ipt, unc) averages + 6 masks
        assertEquals(6 * 3 * 2 + 6, stateKeys.size(), stateKeys.toString());
        assertTrue(stateKeys.contains("hook_state.model.layers.0.self_attn.q_proj.lora_E.exp_avg_unc"), stateKeys.toString());
        assertTrue(stateKeys.contains("hook_state.model.layers.1.self_attn.o_proj.rank_pattern"), stateKeys.toString());
        // a copy of checkpoint-5 without the allocator state
        Path five = cut.resolve("checkpoint-5");
        Path stripped = tmp.resolve("stripped");
        copyTree(five, stripped);
        try (NDManager m = NDManager.newBaseManager();
                SafeTensorsFile f = SafeTensorsFile.open(five.resolve(PeftTrainer.OPTIMIZER_FILE))) {
            Map<String, NDArray> keep = new LinkedHashMap<>();
            for (String k : f.names()) {
                if (!k.startsWith("hook_state.")) {
                    keep.put(k, f.load(k, m));
                }
            }
            SafeTensorsWriter.write(stripped.resolve(PeftTrainer.OPTIMIZER_FILE), keep, Map.of("format", "pt"));
        }
        Run rest = run(cut, ckpt, -1);
        Run blind = run(tmp.resolve("blind"), stripped, -1);
        assertEquals(16, full.losses().size());
        assertEquals(10, first.losses().size());
        assertEquals(6, rest.losses().size());
        List<Double> joined = new ArrayList<>(first.losses());
        joined.addAll(rest.losses());
        assertEquals(full.losses(), joined, "bit-identical losses");
        assertNotNull(full.pattern());
        assertEquals(full.pattern(), rest.pattern());
        assertEquals(12, full.pattern().values().stream().flatMap(List::stream).filter(x -> x).count(), "target budget 2 x 6");
        for (Map.Entry<String, float[]> e : full.weights().entrySet()) {
            assertTrue(java.util.Arrays.equals(e.getValue(), rest.weights().get(e.getKey())), e.getKey());
        }
        assertEquals(11, blind.losses().size());
        boolean differs = !full.pattern().equals(blind.pattern()) || !full.losses().subList(5, 16).equals(blind.losses());
        System.out.printf("adalora resume: losses %s identical, rank pattern identical; without the allocator state the"
                + " resumed pattern %s%n", joined.equals(full.losses()) ? "bit-" : "NOT ",
                full.pattern().equals(blind.pattern()) ? "is the same" : "differs");
        assertTrue(differs, "a resume without the allocator state should not reproduce the run");
    }

    private static void copyTree(Path from, Path to) throws java.io.IOException {
        try (var s = java.nio.file.Files.walk(from)) {
            for (Path p : s.toList()) {
                java.nio.file.Files.copy(p, to.resolve(from.relativize(p).toString()));
            }
        }
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

    /**
     * HF's AdaLoraModel.forward adds the regulariser to outputs.loss in eval mode too: our evaluation loss is HF's
     * eval loss (fixture llama_adalora_train/eval.json, made by make_adalora_eval_fixture.py); perplexity stays
     * exp(task loss).
     */
    @Test
    void evaluationLossIncludesTheRegulariserAsHf() throws Exception {
        JsonNode eval = Fixtures.json("llama_adalora_train", "eval.json");
        List<Example> records = new ArrayList<>();
        for (JsonNode r : eval.get("records")) {
            records.add(new Example(ints(r.get("input_ids")), ints(r.get("attention_mask")), ints(r.get("labels")), -1));
        }
        try (TransformerModel model = Models.load(Fixtures.dir("llama_lora").resolve("base"))) {
            PeftModel peft = PeftModel.wrap(model);
            AdaLoraAdapter a = (AdaLoraAdapter) peft.loadAdapter(Fixtures.dir("llama_adalora_train").resolve("trained"),
                    PeftModel.DEFAULT, true);
            double reg = a.extraLoss(new TrainingStep(1, 1)).getFloat();
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(records).optBatchSize(6).build()) {
                Map<String, Double> m = t.evaluate(records);
                double d = Math.abs(m.get("loss") - eval.get("eval_loss").asDouble());
                double dt = Math.abs(Math.log(m.get("perplexity")) - eval.get("eval_task_loss").asDouble());
                System.out.printf("parity llama_adalora_train eval loss (task + orth reg %.4f): |diff| = %.2e, task loss"
                        + " |diff| = %.2e%n", reg, d, dt);
                assertTrue(d < 1e-5, "eval loss " + m + " vs " + eval.get("eval_loss"));
                assertTrue(dt < 1e-5, "task loss");
                assertEquals(eval.get("orth_reg").asDouble(), reg, 1e-5);
                assertNotEquals(0.0, reg);
            }
        }
    }
}
