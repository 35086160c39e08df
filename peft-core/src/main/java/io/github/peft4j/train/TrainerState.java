package io.github.peft4j.train;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The loop's position and counters, saved as {@code trainer_state.json} in every checkpoint so that a
 * resumed run takes exactly the steps the uninterrupted run would have taken.
 *
 * @param globalStep optimizer steps done
 * @param epoch the current epoch (0-based)
 * @param batchInEpoch micro-batches of the current epoch already consumed
 * @param schedulerStep the learning-rate schedule's step (equals globalStep minus skipped fp16 steps: like
 *     transformers, skipped steps do not advance the schedule)
 * @param seed the run's seed: the data order of epoch e is a {@code java.util.Random} seeded from (seed, e);
 *     before step s libtorch's generator (dropout) is reseeded with {@code seed + s}
 * @param lossScale the dynamic loss scale (1 when fp32)
 * @param scalerGoodSteps good steps since the loss scale last changed
 * @param skippedSteps steps skipped for inf/NaN gradients
 * @param bestMetric the best evaluation value of the early-stopping metric so far (NaN if none)
 * @param bestStep the step of {@code bestMetric} (-1 if none)
 * @param evalsWithoutImprovement evaluations since the best one (early-stopping patience counter)
 * @param tokensSeen real tokens of all training batches so far
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record TrainerState(
        @JsonProperty("global_step") long globalStep,
        @JsonProperty("epoch") int epoch,
        @JsonProperty("batch_in_epoch") int batchInEpoch,
        @JsonProperty("scheduler_step") long schedulerStep,
        @JsonProperty("seed") long seed,
        @JsonProperty("loss_scale") double lossScale,
        @JsonProperty("scaler_good_steps") int scalerGoodSteps,
        @JsonProperty("skipped_steps") long skippedSteps,
        @JsonProperty("best_metric") Double bestMetric,
        @JsonProperty("best_step") long bestStep,
        @JsonProperty("evals_without_improvement") int evalsWithoutImprovement,
        @JsonProperty("tokens_seen") long tokensSeen) {

    /** The file name in a checkpoint directory. */
    public static final String FILE = "trainer_state.json";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT)
            .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

    /**
     * Writes the state atomically.
     *
     * @param dir the checkpoint directory
     */
    public void write(Path dir) {
        try {
            AtomicFiles.writeString(dir.resolve(FILE), JSON.writeValueAsString(this) + "\n");
        } catch (IOException e) {
            throw new PeftException(dir + ": cannot write " + FILE + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads the state of a checkpoint.
     *
     * @param dir the checkpoint directory
     * @return the state
     * @throws PeftException naming the file if it is missing or malformed
     */
    public static TrainerState read(Path dir) {
        Path file = dir.resolve(FILE);
        if (!file.toFile().isFile()) {
            throw new PeftException(dir + ": no " + FILE + " (not a checkpoint directory written by PeftTrainer)");
        }
        try {
            TrainerState s = JSON.readValue(io.github.peft4j.io.SizeLimits.check(file, io.github.peft4j.io.SizeLimits.CONFIG_JSON).toFile(), TrainerState.class);
            if (s.globalStep < 0 || s.epoch < 0 || s.batchInEpoch < 0 || s.schedulerStep < 0) {
                throw new PeftException(file + ": negative step, epoch or position: " + s);
            }
            return s;
        } catch (IOException e) {
            throw new PeftException(file + ": malformed trainer state: " + e.getMessage().split("\n")[0], e);
        }
    }
}
