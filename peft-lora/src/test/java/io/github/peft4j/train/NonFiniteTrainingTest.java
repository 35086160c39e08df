package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * A NaN or infinite loss in fp32 training (no loss scaler to skip the step) stops training with an error naming the
 * step and the newest checkpoint; that checkpoint and the parameters keep the last good values.
 */
class NonFiniteTrainingTest {
    @TempDir
    Path out;

    /** Trains 10 steps, poisoning lora_B with {@code poison} after step 3; returns what stopped the run. */
    private PeftException poisonAfterStep3(float poison, int checkpointEvery, List<Long> steps) throws Exception {
        List<Example> data = PeftTrainerTest.randomExamples(12, 9);
        try (TransformerModel model = TinyModels.llama(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0.0);
            Param b = peft.trainableParameters().entrySet().stream().filter(e -> e.getKey().contains("lora_B"))
                    .findFirst().orElseThrow().getValue();
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.05).optMaxSteps(10).optBatchSize(2).optOutputDir(out)
                    .optCheckpointEvery(checkpointEvery).optLogEvery(0).optStepListener(s -> {
                        steps.add(s.step());
                        if (s.step() == 3) {
                            b.array().muli(0).addi(poison); // as an overflowing update would leave it
                        }
                    }).build()) {
                PeftException e = assertThrows(PeftException.class, t::train);
                for (Param p : peft.trainableParameters().values()) {
                    NDArray g = p.array().getGradient();
                    assertFalse(g.isNaN().logicalOr(g.isInfinite()).any().getBoolean(), "gradients were zeroed");
                }
                return e;
            }
        }
    }

    /** Every tensor of a checkpoint's adapter is finite. */
    private void assertFinite(Path checkpoint) {
        try (SafeTensorsFile f = SafeTensorsFile.open(checkpoint.resolve("adapter_model.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            for (String name : f.names()) {
                for (float x : f.load(name, m).toFloatArray()) {
                    assertTrue(Float.isFinite(x), name + " in " + checkpoint + " is finite");
                }
            }
        }
    }

    @ParameterizedTest
    @ValueSource(floats = {Float.NaN, Float.POSITIVE_INFINITY})
    void aNonFiniteLossStopsTrainingBeforeTheUpdate(float poison) throws Exception {
        List<Long> steps = new ArrayList<>();
        PeftException e = poisonAfterStep3(poison, 2, steps);
        assertTrue(e.getMessage().matches("PeftTrainer: step 4: the loss is (NaN|-?Infinity); training stopped before "
                + "this step's update, so the parameters hold step 3's values and the newest checkpoint is .*"), e.getMessage());
        assertTrue(e.getMessage().contains(out.resolve("checkpoint-2").toString()), e.getMessage());
        assertEquals(List.of(1L, 2L, 3L), steps, "step 4 never completed");
        assertEquals(List.of(out.resolve("checkpoint-2")), PeftTrainer.checkpoints(out));
        assertFinite(out.resolve("checkpoint-2"));
        System.out.printf("non-finite loss (%s): %s%n", poison, e.getMessage());
    }

    @ParameterizedTest
    @ValueSource(floats = {Float.NaN, Float.NEGATIVE_INFINITY})
    void nonFiniteParametersAreNeverCheckpointed(float poison) throws Exception {
        List<Long> steps = new ArrayList<>();
        PeftException e = poisonAfterStep3(poison, 1, steps);
        assertTrue(e.getMessage().matches("PeftTrainer: step 3: trainable parameter '.*lora_B.*' holds NaN or infinite "
                + "values after the update; training stopped without writing checkpoint-3, the newest checkpoint is .*"),
                e.getMessage());
        assertTrue(e.getMessage().contains(out.resolve("checkpoint-2").toString()), e.getMessage());
        assertEquals(List.of(out.resolve("checkpoint-1"), out.resolve("checkpoint-2")), PeftTrainer.checkpoints(out));
        assertFinite(out.resolve("checkpoint-2"));
        System.out.printf("non-finite parameter (%s): %s%n", poison, e.getMessage());
    }
}
