package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Checkpoints ({@code checkpoint-<step>/}: the adapter files, {@code optimizer.safetensors} with the optimizer
 * state, the fp32 trainable parameters under {@link PeftTrainer#MASTER_PREFIX} and the adapter's
 * {@link TrainingHooks#trainingState} under {@link #HOOK_PREFIX}, {@code trainer_state.json}),
 * written to a temporary directory and renamed; the best adapter ({@code best/}); and resuming from a checkpoint.
 * The trainable parameters are the fp32 leaves themselves (also for fp16 compute), so a resumed run continues from
 * exactly the values the interrupted one had.
 */
final class Checkpoints {
    private static final Logger LOG = LoggerFactory.getLogger(Checkpoints.class);
    static final String PREFIX = "checkpoint-";
    /** Key prefix, in {@code optimizer.safetensors}, of the adapter's {@link TrainingHooks#trainingState}. */
    static final String HOOK_PREFIX = "hook_state.";

    private final PeftModel peft;
    private final Map<String, Param> trainable;
    private final Optimizer optimizer;
    private final Path outputDir;
    private final int keep;

    /**
     * @param peft the model
     * @param trainable its trainable parameters by name
     * @param optimizer the optimizer whose state is saved
     * @param outputDir the output directory (null: nothing is written)
     * @param keep how many checkpoints to keep
     */
    Checkpoints(PeftModel peft, Map<String, Param> trainable, Optimizer optimizer, Path outputDir, int keep) {
        this.peft = peft;
        this.trainable = trainable;
        this.optimizer = optimizer;
        this.outputDir = outputDir;
        this.keep = keep;
    }

    private String adapterName() {
        List<String> active = peft.activeAdapters();
        if (active.size() != 1) {
            throw new PeftException("PeftTrainer: checkpoints need exactly one active adapter, found " + active);
        }
        return active.get(0);
    }

    /**
     * Writes {@code checkpoint-<step>/} into a temporary directory and renames it; then deletes all but the newest
     * {@code keep} checkpoints.
     *
     * @param state the loop state to save with it
     */
    void write(TrainerState state) {
        checkFinite(state.globalStep());
        Path target = outputDir.resolve(PREFIX + state.globalStep());
        Path tmp = outputDir.resolve("." + PREFIX + state.globalStep() + ".tmp");
        try {
            deleteTree(tmp);
            Files.createDirectories(tmp);
            peft.saveAdapter(adapterName(), tmp);
            try (NDScope scope = new NDScope()) {
                Map<String, NDArray> tensors = new LinkedHashMap<>(optimizer.state());
                trainable.forEach((k, p) -> tensors.put(PeftTrainer.MASTER_PREFIX + k, p.array()));
                TrainingHooks hooks = hooks();
                if (hooks != null) {
                    hooks.trainingState().forEach((k, v) -> tensors.put(HOOK_PREFIX + k, v));
                }
                SafeTensorsWriter.write(tmp.resolve(PeftTrainer.OPTIMIZER_FILE), tensors, Map.of("format", "pt"));
            }
            state.write(tmp);
            AtomicFiles.replaceDirectory(tmp, target);
            LOG.info("saved checkpoint {}", target);
            List<Path> all = list(outputDir);
            for (int i = 0; i < all.size() - keep; i++) {
                AtomicFiles.deleteDirectory(all.get(i)); // renamed away first: never a half-deleted checkpoint
            }
        } catch (IOException e) {
            throw new PeftException(target + ": cannot write checkpoint: " + e.getMessage(), e);
        }
    }

    /** @return the training hooks of the checkpointed adapter, or null */
    private TrainingHooks hooks() {
        return peft.adapter(adapterName()).capability(TrainingHooks.class);
    }

    /**
     * Refuses to checkpoint non-finite trainable values (an update that overflowed): the newest checkpoint on disk
     * stays the last good one.
     */
    private void checkFinite(long step) {
        try (NDScope scope = new NDScope()) {
            for (Map.Entry<String, Param> e : trainable.entrySet()) {
                NDArray a = e.getValue().array();
                if (a.isNaN().logicalOr(a.isInfinite()).any().getBoolean()) {
                    List<Path> saved = list(outputDir);
                    throw new PeftException("PeftTrainer: step " + step + ": trainable parameter '" + e.getKey()
                            + "' holds NaN or infinite values after the update; training stopped without writing "
                            + "checkpoint-" + step + ", " + (saved.isEmpty() ? "no checkpoint was written yet"
                                    : "the newest checkpoint is " + saved.get(saved.size() - 1))
                            + " (lower the learning rate or clip gradients, then resume from it)");
                }
            }
        }
    }

    /** Replaces {@code best/} with the current adapter (written to a temporary directory, then renamed). */
    void saveBest() {
        Path target = outputDir.resolve(PeftTrainer.BEST);
        Path tmp = outputDir.resolve("." + PeftTrainer.BEST + ".tmp");
        try {
            deleteTree(tmp);
            peft.saveAdapter(adapterName(), tmp);
            AtomicFiles.replaceDirectory(tmp, target);
        } catch (IOException e) {
            throw new PeftException(target + ": cannot save the best adapter: " + e.getMessage(), e);
        }
    }

    /**
     * @param outputDir an output directory
     * @return its {@code checkpoint-<step>} directories, oldest first
     */
    static List<Path> list(Path outputDir) {
        if (!Files.isDirectory(outputDir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(outputDir)) {
            return s.filter(p -> Files.isDirectory(p) && p.getFileName().toString().matches(PREFIX + "\\d+"))
                    .sorted(Comparator.comparingLong(p -> Long.parseLong(p.getFileName().toString().substring(PREFIX.length()))))
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + outputDir + ": " + e.getMessage(), e);
        }
    }

    /**
     * Loads the trainable parameters and the optimizer state of a checkpoint (the caller restores the rest of
     * the returned loop state).
     *
     * @param dir a checkpoint directory
     * @param seed this run's seed (a different one only warns: the data order will differ)
     * @param totalSteps this run's steps (a checkpoint past them is an error)
     * @return the checkpoint's loop state
     */
    TrainerState load(Path dir, long seed, long totalSteps) {
        TrainerState st = TrainerState.read(dir);
        if (st.seed() != seed) {
            LOG.warn("resuming with seed {} from a checkpoint made with seed {}: the data order will differ", seed, st.seed());
        }
        if (st.globalStep() > totalSteps) {
            throw new PeftException(dir + ": checkpoint is at step " + st.globalStep() + ", past this run's " + totalSteps + " steps");
        }
        Path file = dir.resolve(PeftTrainer.OPTIMIZER_FILE);
        if (!Files.isRegularFile(file)) {
            throw new PeftException(dir + ": no " + PeftTrainer.OPTIMIZER_FILE);
        }
        try (NDManager tmp = NDManager.newBaseManager(peft.model().device());
                SafeTensorsFile f = SafeTensorsFile.open(file)) {
            Map<String, NDArray> optState = new LinkedHashMap<>();
            Map<String, NDArray> hookState = new LinkedHashMap<>();
            for (String k : f.names()) {
                if (k.startsWith(HOOK_PREFIX)) {
                    hookState.put(k.substring(HOOK_PREFIX.length()), f.load(k, tmp));
                } else if (!k.startsWith(PeftTrainer.MASTER_PREFIX)) {
                    optState.put(k, f.load(k, tmp));
                }
            }
            for (Map.Entry<String, Param> e : trainable.entrySet()) {
                String key = PeftTrainer.MASTER_PREFIX + e.getKey();
                if (!f.contains(key)) {
                    throw new PeftException(file + ": no tensor '" + key + "' for trainable parameter " + e.getKey()
                            + " (was the checkpoint made with another adapter config?)");
                }
                NDArray w = e.getValue().array();
                NDArray v = f.load(key, tmp, DataType.FLOAT32);
                if (!v.getShape().equals(w.getShape())) {
                    throw new PeftException(file + ": tensor '" + key + "' has shape " + v.getShape() + ", the parameter "
                            + w.getShape());
                }
                v.toType(w.getDataType(), false).copyTo(w); // a value copy outside any gradient path (copyTo, never
                // w - w + v, which is NaN where w holds inf)
            }
            optimizer.loadState(optState);
            TrainingHooks hooks = hooks();
            if (hooks != null) {
                hooks.loadTrainingState(hookState, file.toString());
            }
        }
        return st;
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }
}
