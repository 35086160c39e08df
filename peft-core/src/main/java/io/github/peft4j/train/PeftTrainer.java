package io.github.peft4j.train;

import io.github.peft4j.PeftException;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;

/**
 * The training loop for the trainable parameters of a {@link PeftModel}: mini-batches from a list of
 * {@link Example}s (shuffled per epoch with a seeded {@link Random}), the task's loss from {@link Losses},
 * gradient accumulation, global-norm clipping, an {@link Optimizer} driven by an {@link LrSchedule},
 * periodic evaluation with early stopping and best-adapter keeping, atomic checkpoints that resume exactly,
 * JSON-lines metrics, a PNG chart and a progress line. Every step runs inside an {@link ai.djl.ndarray.NDScope}.
 *
 * <pre>{@code
 * PeftModel peft = PeftModel.wrap(Models.load(dir));
 * peft.addAdapter("default", new LoraConfig().r(8).loraAlpha(16).targetModules("q_proj", "v_proj"));
 * try (PeftTrainer trainer = PeftTrainer.builder().setModel(peft).setTrainData(train).optEvalData(eval)
 *         .optLearningRate(2e-4).optScheduler(LrSchedule.Kind.COSINE).optWarmupSteps(10).optEpochs(3)
 *         .optEvalEvery(50).optEarlyStopping("loss", 3).optOutputDir(Path.of("run")).build()) {
 *     TrainResult result = trainer.train();
 * }
 * peft.save(Path.of("run/final"));
 * }</pre>
 *
 * <p><b>Training hooks.</b> For every active trainable adapter with the {@link io.github.peft4j.peft.TrainingHooks}
 * capability, each step runs: forward → task loss + every {@code extraLoss} (per micro-batch, weighted like the task
 * loss) → backward → {@code afterBackward} → clip → optimizer step → {@code afterStep} → zero gradients. The loss
 * reported includes the extra terms. {@code afterStep} is called on every step, also on one skipped for an fp16
 * overflow (as HF's loop calls AdaLoRA's {@code update_and_allocate} after every {@code optimizer.step()}); the
 * gradients it sees are then zero. Hooks run inside the step's scope.
 *
 * <p><b>Mixed precision.</b> A model loaded in FLOAT16 (on a GPU, or on the CPU, where libtorch computes fp16 too)
 * computes in fp16 with frozen fp16 base weights; its trainable parameters are fp32 leaves that the forward pass casts
 * to fp16 differentiably, so backward writes fp32 gradients into exactly the arrays the optimizer updates (no master
 * copies). The loss is computed in fp32 and multiplied by a dynamic {@link LossScaler} scale; the gradients are
 * unscaled, checked and measured in one fused reduction (a step with an inf or NaN is skipped and the scale
 * lowered; the schedule does not advance), clipped and applied. A FLOAT32 model trains in fp32 without scaling.
 *
 * <p><b>Memory.</b> Each micro-batch runs in its own {@link ai.djl.ndarray.NDScope}, each transformer block in a
 * nested one, so a block's intermediates are freed as soon as it returns (autograd keeps what backward needs), and the
 * logits as soon as the loss has consumed them. With {@link Builder#optGradientCheckpointing} the blocks run without
 * keeping their activations and are recomputed, one at a time, in backward (the same gradients; about one more
 * forward pass of compute). With a 4-bit base this is also what keeps every layer's dequantised weight from being
 * held for backward: a 4-bit layer's dense weight then lives only while its block is recomputed.
 *
 * <p><b>Exact resume.</b> The data order of epoch {@code e} depends only on (seed, e); before step {@code s}
 * libtorch's generator (which dropout draws from) is reseeded with {@code seed + s}, before each later micro-batch
 * and each transformer block with a seed derived from it (so a recomputed block draws the dropout masks it drew in
 * the forward pass); a checkpoint stores the
 * adapter, the optimizer state and the fp32 trainable parameters, the schedule step, the scaler and the position
 * in the epoch. A run resumed from {@code checkpoint-N} therefore takes the same steps with the same losses.
 */
public final class PeftTrainer implements AutoCloseable {
    /** The chart file written next to the checkpoints. */
    public static final String CHART = "curves.png";
    /** The default metrics file in the output directory. */
    public static final String METRICS = "metrics.jsonl";
    /** The optimizer state file in a checkpoint. */
    public static final String OPTIMIZER_FILE = "optimizer.safetensors";
    /** The key prefix of the fp32 trainable parameters in {@link #OPTIMIZER_FILE}. */
    public static final String MASTER_PREFIX = "master.";
    /** The directory of the best adapter in the output directory. */
    public static final String BEST = "best";

    // the parts, read by TrainingLoop
    final Builder b;
    final PeftModel peft;
    final Map<String, Param> trainable;
    final TaskLoss taskLoss;
    final Precision precision;
    final Optimizer optimizer;
    final Evaluator evaluator;
    final Checkpoints checkpoints;
    final int batchesPerEpoch;
    final long totalSteps;
    final LrSchedule schedule;
    final MetricsLog metrics;
    volatile boolean stopRequested;
    private final boolean ownsOptimizer;

    private PeftTrainer(Builder b) {
        this.b = b;
        this.peft = b.model;
        TransformerModel model = peft.model();
        TaskType task = model.task();
        if (task == TaskType.FEATURE_EXTRACTION) {
            throw new PeftException("PeftTrainer: " + model.architecture() + " has no head (FEATURE_EXTRACTION); "
                    + "load it for CAUSAL_LM, SEQ_CLS or TOKEN_CLS");
        }
        this.trainable = peft.trainableParameters();
        if (trainable.isEmpty()) {
            throw new PeftException("PeftTrainer: the model has no trainable parameters (add an adapter, or load one "
                    + "with trainable = true)");
        }
        this.taskLoss = new TaskLoss(task);
        this.precision = new Precision(model, trainable, b.scaler);
        this.ownsOptimizer = b.optimizer == null;
        this.optimizer = b.optimizer != null ? b.optimizer : AdamW.builder().weightDecay(b.weightDecay).build();
        this.evaluator = new Evaluator(peft, taskLoss, b.collator, b.evalBatchSize, b.labelNames);
        this.checkpoints = new Checkpoints(peft, trainable, optimizer, b.outputDir, b.keepCheckpoints);
        int n = b.train.size();
        this.batchesPerEpoch = (n + b.batchSize - 1) / b.batchSize;
        long stepsPerEpoch = (batchesPerEpoch + b.accumulation - 1) / b.accumulation;
        this.totalSteps = b.maxSteps > 0 ? b.maxSteps : stepsPerEpoch * b.epochs;
        this.schedule = new LrSchedule(b.scheduler, b.lr, b.warmupSteps, totalSteps);
        Path metricsFile = b.metricsFile != null ? b.metricsFile : b.outputDir != null ? b.outputDir.resolve(METRICS) : null;
        this.metrics = new MetricsLog(metricsFile);
    }

    /** @return a new builder */
    public static Builder builder() {
        return new Builder();
    }

    /** @return the number of optimizer steps of the whole run */
    public long totalSteps() {
        return totalSteps;
    }

    /** @return the learning-rate schedule */
    public LrSchedule schedule() {
        return schedule;
    }

    /** @return the loss scaler (disabled for fp32) */
    public LossScaler scaler() {
        return precision.scaler();
    }

    /** @return the metrics recorded so far */
    public MetricsLog metrics() {
        return metrics;
    }

    /** Asks the loop to stop after the current step (e.g. from a step listener); a final checkpoint is written. */
    public void requestStop() {
        stopRequested = true;
    }

    /**
     * What one optimizer step did, passed to the step listener.
     *
     * @param step the 1-based step
     * @param epoch the 0-based epoch
     * @param loss the step's training loss (over all its micro-batches)
     * @param lr the learning rate used
     * @param skipped whether the update was skipped for an fp16 overflow
     * @param eval evaluation metrics measured after the step, or null
     */
    public record StepInfo(long step, int epoch, double loss, double lr, boolean skipped, Map<String, Double> eval) {}

    /**
     * The outcome of {@link #train()}.
     *
     * @param steps the optimizer steps done in total (including those before a resume)
     * @param losses the training loss of every step of this call
     * @param lastEval the last evaluation's metrics (empty if there was no evaluation data)
     * @param bestMetric the best value of the early-stopping metric (NaN if none)
     * @param bestStep its step (-1 if none)
     * @param stoppedEarly whether early stopping ended the run
     */
    public record TrainResult(long steps, List<Double> losses, Map<String, Double> lastEval, double bestMetric,
            long bestStep, boolean stoppedEarly) {}

    /**
     * Trains from the start, or from the checkpoint given to {@link Builder#optResumeFrom(Path)}.
     *
     * @return the result
     */
    public TrainResult train() {
        return new TrainingLoop(this).run();
    }

    /**
     * Evaluates without gradients: {@code loss} (mean over labelled items) for every task; {@code perplexity}
     * for causal LM; {@code accuracy} and {@code macro_f1} for classification (per token for token
     * classification, where also {@code entity_f1} over BIO spans when label names were given).
     *
     * @param data the evaluation examples
     * @return the metrics by name
     */
    public Map<String, Double> evaluate(List<Example> data) {
        return evaluator.evaluate(data);
    }

    /**
     * The checkpoint directories of an output directory, oldest first.
     *
     * @param outputDir the trainer's output directory
     * @return {@code checkpoint-<step>} directories sorted by step
     */
    public static List<Path> checkpoints(Path outputDir) {
        return Checkpoints.list(outputDir);
    }

    /** Frees the optimizer this trainer created. */
    @Override
    public void close() {
        if (ownsOptimizer) {
            optimizer.close();
        }
    }

    /** Configures a {@link PeftTrainer}: {@code set*} are required, {@code opt*} optional. */
    public static final class Builder {
        PeftModel model;
        List<Example> train;
        List<Example> eval;
        Optimizer optimizer;
        double weightDecay;
        double lr = 5e-5;
        LrSchedule.Kind scheduler = LrSchedule.Kind.CONSTANT;
        long warmupSteps;
        int batchSize = 8;
        int evalBatchSize = 8;
        int accumulation = 1;
        int epochs = 1;
        long maxSteps = -1;
        double maxGradNorm = 1.0;
        int evalEvery;
        String earlyStopMetric = "loss";
        boolean greaterIsBetter;
        int patience;
        Path outputDir;
        Path metricsFile;
        int checkpointEvery;
        int keepCheckpoints = 2;
        long seed = 42;
        boolean shuffle = true;
        Collator collator = new Collator();
        List<String> labelNames;
        int logEvery = 10;
        Path resumeFrom;
        LossScaler scaler;
        Consumer<StepInfo> listener;
        boolean gradientCheckpointing;

        private Builder() {}

        /**
         * @param model the model whose trainable parameters are trained (required)
         * @return this
         */
        public Builder setModel(PeftModel model) {
            this.model = model;
            return this;
        }

        /**
         * @param data the training examples (required, non-empty)
         * @return this
         */
        public Builder setTrainData(List<Example> data) {
            this.train = List.copyOf(data);
            return this;
        }

        /**
         * @param data evaluation examples (evaluated every {@link #optEvalEvery} steps and at the end)
         * @return this
         */
        public Builder optEvalData(List<Example> data) {
            this.eval = data == null ? null : List.copyOf(data);
            return this;
        }

        /**
         * @param optimizer the optimizer (default: {@link AdamW} with {@link #optWeightDecay}); the caller closes it
         * @return this
         */
        public Builder optOptimizer(Optimizer optimizer) {
            this.optimizer = optimizer;
            return this;
        }

        /**
         * @param weightDecay the default AdamW's decoupled weight decay (default 0; biases and norms are excluded)
         * @return this
         */
        public Builder optWeightDecay(double weightDecay) {
            this.weightDecay = weightDecay;
            return this;
        }

        /**
         * @param lr the peak learning rate (default 5e-5)
         * @return this
         */
        public Builder optLearningRate(double lr) {
            this.lr = lr;
            return this;
        }

        /**
         * @param kind the decay after warmup (default constant, so that the learning rate given is the one used)
         * @return this
         */
        public Builder optScheduler(LrSchedule.Kind kind) {
            this.scheduler = kind;
            return this;
        }

        /**
         * @param steps linear warmup steps (default 0)
         * @return this
         */
        public Builder optWarmupSteps(long steps) {
            this.warmupSteps = steps;
            return this;
        }

        /**
         * @param size examples per micro-batch (default 8); also the evaluation batch size unless set
         * @return this
         */
        public Builder optBatchSize(int size) {
            this.batchSize = size;
            this.evalBatchSize = size;
            return this;
        }

        /**
         * @param steps micro-batches per optimizer step (default 1); each micro-batch's mean loss is weighted by
         *     its share of the step's labelled items, so the update equals the one of the whole batch
         * @return this
         */
        public Builder optGradientAccumulation(int steps) {
            this.accumulation = steps;
            return this;
        }

        /**
         * @param epochs passes over the training data (default 1; ignored when max steps is set)
         * @return this
         */
        public Builder optEpochs(int epochs) {
            this.epochs = epochs;
            return this;
        }

        /**
         * @param steps the number of optimizer steps (overrides epochs; the data is cycled epoch by epoch)
         * @return this
         */
        public Builder optMaxSteps(long steps) {
            this.maxSteps = steps;
            return this;
        }

        /**
         * @param maxNorm global gradient-norm clipping threshold (default 1.0; 0 disables clipping)
         * @return this
         */
        public Builder optMaxGradNorm(double maxNorm) {
            this.maxGradNorm = maxNorm;
            return this;
        }

        /**
         * @param steps evaluate every N optimizer steps (default 0: only at the end)
         * @return this
         */
        public Builder optEvalEvery(int steps) {
            this.evalEvery = steps;
            return this;
        }

        /**
         * Early stopping and best-adapter selection.
         *
         * @param metric the evaluation metric ({@code loss} and {@code perplexity} are minimised, others maximised)
         * @param patience stop after this many evaluations without improvement (0: never stop early)
         * @return this
         */
        public Builder optEarlyStopping(String metric, int patience) {
            this.earlyStopMetric = metric;
            this.greaterIsBetter = !("loss".equals(metric) || "perplexity".equals(metric));
            this.patience = patience;
            return this;
        }

        /**
         * @param dir where checkpoints, {@code best/}, {@code metrics.jsonl} and {@code curves.png} go
         * @return this
         */
        public Builder optOutputDir(Path dir) {
            this.outputDir = dir;
            return this;
        }

        /**
         * @param file the JSON-lines metrics file (default {@code <output>/metrics.jsonl})
         * @return this
         */
        public Builder optMetricsFile(Path file) {
            this.metricsFile = file;
            return this;
        }

        /**
         * @param steps write {@code checkpoint-<step>/} every N steps and at the end (default 0: none)
         * @return this
         */
        public Builder optCheckpointEvery(int steps) {
            this.checkpointEvery = steps;
            return this;
        }

        /**
         * @param keep how many of the newest checkpoints to keep (default 2)
         * @return this
         */
        public Builder optKeepCheckpoints(int keep) {
            this.keepCheckpoints = keep;
            return this;
        }

        /**
         * @param seed the data order and dropout seed (default 42)
         * @return this
         */
        public Builder optSeed(long seed) {
            this.seed = seed;
            return this;
        }

        /**
         * @param shuffle shuffle the training data every epoch (default true)
         * @return this
         */
        public Builder optShuffle(boolean shuffle) {
            this.shuffle = shuffle;
            return this;
        }

        /**
         * @param collator how examples are padded (default right padding with id 0)
         * @return this
         */
        public Builder optCollator(Collator collator) {
            this.collator = collator;
            return this;
        }

        /**
         * @param names token-classification label names by id (BIO tags) for entity-level F1
         * @return this
         */
        public Builder optLabelNames(List<String> names) {
            this.labelNames = names == null ? null : List.copyOf(names);
            return this;
        }

        /**
         * @param steps when stderr is not a terminal, log progress every N steps (default 10)
         * @return this
         */
        public Builder optLogEvery(int steps) {
            this.logEvery = steps;
            return this;
        }

        /**
         * @param checkpoint a {@code checkpoint-<step>} directory to continue from
         * @return this
         */
        public Builder optResumeFrom(Path checkpoint) {
            this.resumeFrom = checkpoint;
            return this;
        }

        /**
         * @param scaler a loss scaler to use instead of the default (enabled exactly for FLOAT16 models)
         * @return this
         */
        public Builder optLossScaler(LossScaler scaler) {
            this.scaler = scaler;
            return this;
        }

        /**
         * Gradient checkpointing per transformer block (transformers' {@code gradient_checkpointing_enable()}): the
         * forward pass keeps only each block's input, and backward recomputes each block from it, last block first,
         * with the same dropout masks. The gradients equal those without (up to floating-point rounding); memory drops
         * from every block's activations to one block's, for about one more forward pass of compute. An adapter whose
         * extra loss term reads arrays its layers kept during the forward pass cannot train this way (the step fails
         * and says so).
         *
         * @param on whether to checkpoint (default false)
         * @return this
         */
        public Builder optGradientCheckpointing(boolean on) {
            this.gradientCheckpointing = on;
            return this;
        }

        /**
         * @param listener called after every optimizer step (may call {@link PeftTrainer#requestStop()})
         * @return this
         */
        public Builder optStepListener(Consumer<StepInfo> listener) {
            this.listener = listener;
            return this;
        }

        /**
         * Checks the configuration and creates the trainer.
         *
         * @return the trainer
         * @throws PeftException naming the option that is missing or out of range
         */
        public PeftTrainer build() {
            if (model == null) {
                throw new PeftException("PeftTrainer: setModel is required");
            }
            if (train == null || train.isEmpty()) {
                throw new PeftException("PeftTrainer: setTrainData needs at least one example");
            }
            if (eval != null && eval.isEmpty()) {
                throw new PeftException("PeftTrainer: optEvalData is empty");
            }
            if (batchSize < 1 || accumulation < 1 || epochs < 1 || maxSteps == 0 || evalEvery < 0 || checkpointEvery < 0
                    || keepCheckpoints < 1 || warmupSteps < 0 || patience < 0 || maxGradNorm < 0 || !(lr >= 0)) {
                throw new PeftException("PeftTrainer: need batch size, gradient accumulation, epochs, keep checkpoints >= 1, "
                        + "max steps > 0 when set, and non-negative eval/checkpoint interval, warmup, patience, clip norm, "
                        + "learning rate; got batch " + batchSize + ", accumulation " + accumulation + ", epochs " + epochs
                        + ", max steps " + maxSteps + ", eval every " + evalEvery + ", checkpoint every " + checkpointEvery
                        + ", keep " + keepCheckpoints + ", warmup " + warmupSteps + ", patience " + patience + ", clip "
                        + maxGradNorm + ", lr " + lr);
            }
            if (resumeFrom != null && !Files.isDirectory(resumeFrom)) {
                throw new PeftException("PeftTrainer: resume checkpoint " + resumeFrom + " is not a directory");
            }
            if (patience > 0 && eval == null) {
                throw new PeftException("PeftTrainer: early stopping needs evaluation data");
            }
            return new PeftTrainer(this);
        }
    }
}
