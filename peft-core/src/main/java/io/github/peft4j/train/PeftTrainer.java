package io.github.peft4j.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The training loop for the trainable parameters of a {@link PeftModel}: mini-batches from a list of
 * {@link Example}s (shuffled per epoch with a seeded {@link Random}), the task's loss from {@link Losses},
 * gradient accumulation, global-norm clipping, an {@link Optimizer} driven by an {@link LrSchedule},
 * periodic evaluation with early stopping and best-adapter keeping, atomic checkpoints that resume exactly,
 * JSON-lines metrics, a PNG chart and a progress line. Every step runs inside an {@link NDScope}.
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
 * <p><b>Mixed precision.</b> A model loaded in FLOAT16 (GPU only) trains with fp32 master copies of the
 * trainable parameters: the loss is multiplied by a dynamic {@link LossScaler} scale, the fp16 gradients are
 * copied into the masters, unscaled and checked (a step with an inf or NaN is skipped and the scale lowered),
 * clipped, the optimizer updates the masters, and the masters are copied back into the fp16 parameters. A
 * FLOAT32 model trains in fp32 without scaling. FLOAT16 on the CPU is refused.
 *
 * <p><b>Exact resume.</b> The data order of epoch {@code e} depends only on (seed, e); before step {@code s}
 * libtorch's generator (which dropout draws from) is reseeded with {@code seed + s}; a checkpoint stores the
 * adapter, the optimizer state and fp32 master weights, the schedule step, the scaler and the position in the
 * epoch. A run resumed from {@code checkpoint-N} therefore takes the same steps with the same losses.
 */
public final class PeftTrainer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(PeftTrainer.class);
    /** The chart file written next to the checkpoints. */
    public static final String CHART = "curves.png";
    /** The default metrics file in the output directory. */
    public static final String METRICS = "metrics.jsonl";
    /** The optimizer state file in a checkpoint. */
    public static final String OPTIMIZER_FILE = "optimizer.safetensors";
    /** The key prefix of fp32 master weights in {@link #OPTIMIZER_FILE}. */
    public static final String MASTER_PREFIX = "master.";
    /** The directory of the best adapter in the output directory. */
    public static final String BEST = "best";
    private static final String CHECKPOINT_PREFIX = "checkpoint-";

    private final Builder b;
    private final PeftModel peft;
    private final TaskType task;
    private final Optimizer optimizer;
    private final boolean ownsOptimizer;
    private final Map<String, Param> trainable;
    private final Map<String, Param> masters;
    private final NDManager masterManager;
    private final LossScaler scaler;
    private final int batchesPerEpoch;
    private final long totalSteps;
    private final LrSchedule schedule;
    private final MetricsLog metrics;
    private volatile boolean stopRequested;

    private PeftTrainer(Builder b) {
        this.b = b;
        this.peft = b.model;
        TransformerModel model = peft.model();
        this.task = model.task();
        if (task == TaskType.FEATURE_EXTRACTION) {
            throw new PeftException("PeftTrainer: " + model.architecture() + " has no head (FEATURE_EXTRACTION); "
                    + "load it for CAUSAL_LM, SEQ_CLS or TOKEN_CLS");
        }
        this.trainable = peft.trainableParameters();
        if (trainable.isEmpty()) {
            throw new PeftException("PeftTrainer: the model has no trainable parameters (add an adapter, or load one "
                    + "with trainable = true)");
        }
        boolean fp16 = model.dtype() == DataType.FLOAT16;
        if (fp16 && ai.djl.Device.Type.CPU.equals(model.device().getDeviceType())) {
            throw new PeftException("PeftTrainer: FLOAT16 training needs a GPU; load the model in FLOAT32 on the CPU");
        }
        this.scaler = b.scaler != null ? b.scaler : new LossScaler(fp16);
        if (fp16) {
            masterManager = NDManager.newBaseManager(model.device());
            masters = new LinkedHashMap<>();
            trainable.forEach((k, p) -> {
                Param m = new Param(p.array().toType(DataType.FLOAT32, true));
                m.array().attach(masterManager);
                m.setTrainable(true);
                masters.put(k, m);
            });
        } else {
            masterManager = null;
            masters = trainable;
        }
        this.ownsOptimizer = b.optimizer == null;
        this.optimizer = b.optimizer != null ? b.optimizer : AdamW.builder().weightDecay(b.weightDecay).build();
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
        return scaler;
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
        TransformerModel model = peft.model();
        TrainerState st = b.resumeFrom != null ? resume(b.resumeFrom)
                : new TrainerState(0, 0, 0, 0, b.seed, scaler.scale(), 0, 0, null, -1, 0, 0);
        long step = st.globalStep();
        int epoch = st.epoch();
        int pos = st.batchInEpoch();
        long schedStep = st.schedulerStep();
        long tokensSeen = st.tokensSeen();
        Double best = st.bestMetric();
        long bestStep = st.bestStep();
        int patienceUsed = st.evalsWithoutImprovement();
        List<Double> losses = new ArrayList<>();
        Map<String, Double> lastEval = Map.of();
        boolean stoppedEarly = false;
        long lastCheckpoint = step;
        Progress progress = Progress.auto(step, totalSteps, b.logEvery);
        List<Integer> order = order(epoch);
        long startNanos = System.nanoTime();
        long tokensThisRun = 0;
        LOG.info("training {} parameters ({} tensors) for {} steps: {} examples, batch {} x {} accumulation, {} lr {} "
                + "warmup {}, {}", trainable.values().stream().mapToLong(Param::numel).sum(), trainable.size(),
                totalSteps, b.train.size(), b.batchSize, b.accumulation, b.scheduler, b.lr, b.warmupSteps,
                scaler.enabled() ? "fp16 with fp32 master weights" : "fp32");
        model.train(true);
        try {
            while (step < totalSteps && !stopRequested) {
                if (pos >= batchesPerEpoch) {
                    epoch++;
                    pos = 0;
                    order = order(epoch);
                }
                int micro = Math.min(b.accumulation, batchesPerEpoch - pos);
                Engine.getInstance().setRandomSeed((int) (b.seed + step));
                double lr = schedule.rate(schedStep);
                double loss;
                boolean skipped;
                long tokens = 0;
                try (NDScope scope = new NDScope()) {
                    List<Batch> batches = new ArrayList<>();
                    long[] counts = new long[micro];
                    long total = 0;
                    for (int i = 0; i < micro; i++) {
                        Batch batch = b.collator.collate(model.manager(), slice(order, pos + i));
                        batches.add(batch);
                        counts[i] = lossItems(batch);
                        total += counts[i];
                        tokens += batch.tokens();
                    }
                    if (total == 0) {
                        throw new PeftException("PeftTrainer: step " + (step + 1) + " has no labelled token (every label is "
                                + Example.IGNORE + "); check the data's labels");
                    }
                    loss = 0;
                    for (int i = 0; i < micro; i++) {
                        if (counts[i] == 0) {
                            continue;
                        }
                        double share = (double) counts[i] / total;
                        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                            NDArray l = loss(peft.forward(batches.get(i).input()), batches.get(i).labels());
                            if (l.getDataType() != DataType.FLOAT32) {
                                l = l.toType(DataType.FLOAT32, false); // the scale (2^16) does not fit in fp16
                            }
                            loss += l.getFloat() * share;
                            double factor = share * scaler.scale();
                            gc.backward(factor == 1.0 ? l : l.mul(GradClip.scope(l, factor)));
                        }
                    }
                    skipped = !update(lr);
                }
                if (!skipped) {
                    schedStep++;
                }
                step++;
                pos += micro;
                tokensSeen += tokens;
                tokensThisRun += tokens;
                losses.add(loss);
                double seconds = (System.nanoTime() - startNanos) / 1e9;
                double tps = seconds > 0 ? tokensThisRun / seconds : 0;
                Map<String, Double> eval = null;
                if (b.eval != null && b.evalEvery > 0 && step % b.evalEvery == 0 || b.eval != null && step == totalSteps) {
                    progress.breakLine();
                    eval = evaluate(b.eval);
                    lastEval = eval;
                    model.train(true);
                    LOG.info("step {} eval {}", step, eval);
                    Double value = eval.get(b.earlyStopMetric);
                    if (value == null) {
                        throw new PeftException("PeftTrainer: early-stopping metric '" + b.earlyStopMetric
                                + "' is not among the evaluation metrics " + eval.keySet());
                    }
                    if (best == null || better(value, best)) {
                        best = value;
                        bestStep = step;
                        patienceUsed = 0;
                        if (b.outputDir != null) {
                            saveBest();
                        }
                    } else {
                        patienceUsed++;
                        if (b.patience > 0 && patienceUsed >= b.patience) {
                            stoppedEarly = true;
                            LOG.info("early stopping at step {}: {} has not improved on {} (step {}) for {} evaluations",
                                    step, b.earlyStopMetric, best, bestStep, patienceUsed);
                        }
                    }
                }
                metrics.step(step, loss, lr, tps, eval);
                progress.update(step, loss, lr, tps);
                if (b.listener != null) {
                    b.listener.accept(new StepInfo(step, epoch, loss, lr, skipped, eval));
                }
                TrainerState now = new TrainerState(step, epoch, pos, schedStep, b.seed, scaler.scale(), scaler.goodSteps(),
                        scaler.skippedSteps(), best, bestStep, patienceUsed, tokensSeen);
                boolean last = step == totalSteps || stoppedEarly || stopRequested;
                if (b.outputDir != null && (b.checkpointEvery > 0 && step % b.checkpointEvery == 0 || last && b.checkpointEvery > 0)) {
                    if (lastCheckpoint != step) {
                        checkpoint(now);
                        lastCheckpoint = step;
                    }
                }
                if (b.outputDir != null && eval != null) {
                    metrics.writeChart(b.outputDir.resolve(CHART));
                }
                if (stoppedEarly) {
                    break;
                }
            }
        } finally {
            progress.breakLine();
            model.train(false);
        }
        if (b.outputDir != null) {
            metrics.writeChart(b.outputDir.resolve(CHART));
        }
        return new TrainResult(step, losses, lastEval, best == null ? Double.NaN : best, bestStep, stoppedEarly);
    }

    private boolean better(double value, double best) {
        return b.greaterIsBetter ? value > best : value < best;
    }

    /**
     * The data order of an epoch: a permutation from a {@link Random} seeded with (seed, epoch) alone, so that a
     * resumed run sees the same order.
     */
    private List<Integer> order(int epoch) {
        List<Integer> idx = new ArrayList<>(b.train.size());
        for (int i = 0; i < b.train.size(); i++) {
            idx.add(i);
        }
        if (b.shuffle) {
            Collections.shuffle(idx, new Random(b.seed * 1_000_003L + epoch));
        }
        return idx;
    }

    private List<Example> slice(List<Integer> order, int batchIndex) {
        int from = batchIndex * b.batchSize;
        int to = Math.min(order.size(), from + b.batchSize);
        List<Example> out = new ArrayList<>(to - from);
        for (int i = from; i < to; i++) {
            out.add(b.train.get(order.get(i)));
        }
        return out;
    }

    /** The number of items the batch's mean loss averages over (its weight within an accumulated step). */
    private long lossItems(Batch batch) {
        if (task == TaskType.SEQ_CLS) {
            return batch.size();
        }
        if (task == TaskType.CAUSAL_LM) {
            // the shifted loss never uses the first position's label
            return batch.labels().get(new NDIndex(":, 1:")).neq(Example.IGNORE).sum().getLong();
        }
        return batch.labelledTokens();
    }

    /** The task's mean loss; labels are padded on the left when virtual tokens were prepended to the logits. */
    private NDArray loss(ModelOutput out, NDArray labels) {
        NDArray logits = out.logits();
        switch (task) {
            case SEQ_CLS:
                return Losses.classification(logits, labels);
            case CAUSAL_LM:
                return Losses.causalLm(logits, alignLabels(logits, labels));
            case TOKEN_CLS:
            default:
                return Losses.tokenClassification(logits, alignLabels(logits, labels));
        }
    }

    private static NDArray alignLabels(NDArray logits, NDArray labels) {
        long extra = logits.getShape().get(1) - labels.getShape().get(1);
        if (extra <= 0) {
            return labels;
        }
        NDArray pad = labels.getManager().full(new Shape(labels.getShape().get(0), extra), Example.IGNORE, labels.getDataType());
        return pad.concat(labels, 1);
    }

    /**
     * Unscale, check, clip and update (fp16: through the fp32 masters); zeroes every gradient.
     *
     * @return false if the step was skipped for an overflow
     */
    private boolean update(double lr) {
        if (masters != trainable) {
            trainable.forEach((k, p) -> {
                if (p.array().hasGradient()) {
                    NDArray g = masters.get(k).array().getGradient();
                    JniUtils.zeroGrad((PtNDArray) masters.get(k).array());
                    g.addi(p.array().getGradient().toType(DataType.FLOAT32, false));
                }
            });
        }
        boolean overflow = scaler.unscaleAndCheck(masters.values());
        boolean take = scaler.update(overflow);
        if (take) {
            if (b.maxGradNorm > 0) {
                GradClip.globalNorm(masters.values(), b.maxGradNorm);
            }
            optimizer.step(masters, lr);
        } else {
            LOG.warn("inf/NaN gradients: step skipped, loss scale lowered to {}", scaler.scale());
            zeroGrads(masters);
        }
        if (masters != trainable) {
            zeroGrads(trainable);
            if (take) {
                trainable.forEach((k, p) -> {
                    NDArray w = p.array();
                    w.subi(w).addi(masters.get(k).array().toType(w.getDataType(), false));
                });
            }
        }
        return take;
    }

    private static void zeroGrads(Map<String, Param> params) {
        params.values().forEach(p -> {
            if (p.array().hasGradient()) {
                JniUtils.zeroGrad((PtNDArray) p.array());
            }
        });
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
        if (data.isEmpty()) {
            throw new PeftException("PeftTrainer: the evaluation data is empty");
        }
        TransformerModel model = peft.model();
        boolean wasTraining = model.isTraining();
        model.train(false);
        double lossSum = 0;
        long items = 0;
        List<Integer> gold = new ArrayList<>();
        List<Integer> pred = new ArrayList<>();
        List<List<String>> goldTags = new ArrayList<>();
        List<List<String>> predTags = new ArrayList<>();
        try {
            for (int from = 0; from < data.size(); from += b.evalBatchSize) {
                List<Example> chunk = data.subList(from, Math.min(data.size(), from + b.evalBatchSize));
                try (NDScope scope = new NDScope()) {
                    Batch batch = b.collator.collate(model.manager(), chunk);
                    long n = lossItems(batch);
                    if (n == 0) {
                        continue;
                    }
                    ModelOutput out = peft.forward(batch.input());
                    lossSum += loss(out, batch.labels()).getFloat() * n;
                    items += n;
                    if (task == TaskType.SEQ_CLS) {
                        long[] p = out.logits().argMax(-1).toLongArray();
                        long[] g = batch.labels().toLongArray();
                        for (int i = 0; i < g.length; i++) {
                            gold.add((int) g[i]);
                            pred.add((int) p[i]);
                        }
                    } else if (task == TaskType.TOKEN_CLS) {
                        NDArray labels = alignLabels(out.logits(), batch.labels());
                        long[] p = out.logits().argMax(-1).toLongArray();
                        long[] g = labels.toLongArray();
                        int t = (int) labels.getShape().get(1);
                        for (int r = 0; r < batch.size(); r++) {
                            List<String> gt = new ArrayList<>();
                            List<String> pt = new ArrayList<>();
                            for (int j = 0; j < t; j++) {
                                int at = r * t + j;
                                if (g[at] != Example.IGNORE) {
                                    gold.add((int) g[at]);
                                    pred.add((int) p[at]);
                                    if (b.labelNames != null) {
                                        gt.add(name((int) g[at]));
                                        pt.add(name((int) p[at]));
                                    }
                                }
                            }
                            goldTags.add(gt);
                            predTags.add(pt);
                        }
                    }
                }
            }
        } finally {
            model.train(wasTraining);
        }
        if (items == 0) {
            throw new PeftException("PeftTrainer: the evaluation data has no labelled token or example");
        }
        Map<String, Double> out = new LinkedHashMap<>();
        double loss = lossSum / items;
        out.put("loss", loss);
        if (task == TaskType.CAUSAL_LM) {
            out.put("perplexity", Math.exp(loss));
        } else {
            int[] g = gold.stream().mapToInt(Integer::intValue).toArray();
            int[] p = pred.stream().mapToInt(Integer::intValue).toArray();
            out.put("accuracy", Metrics.accuracy(g, p));
            out.put("macro_f1", Metrics.macroF1(g, p));
            if (task == TaskType.TOKEN_CLS && b.labelNames != null) {
                out.put("entity_f1", Metrics.entityF1(goldTags, predTags));
            }
        }
        return out;
    }

    private String name(int id) {
        if (id < 0 || id >= b.labelNames.size()) {
            throw new PeftException("PeftTrainer: label id " + id + " has no name (" + b.labelNames.size() + " label names)");
        }
        return b.labelNames.get(id);
    }

    // ---------------------------------------------------------------------------------------------------------
    // checkpoints

    private String adapterName() {
        List<String> active = peft.activeAdapters();
        if (active.size() != 1) {
            throw new PeftException("PeftTrainer: checkpoints need exactly one active adapter, found " + active);
        }
        return active.get(0);
    }

    /**
     * Writes {@code checkpoint-<step>/} (adapter files, {@code optimizer.safetensors}, {@code trainer_state.json})
     * into a temporary directory and renames it; then deletes all but the newest {@code keep} checkpoints.
     */
    private void checkpoint(TrainerState state) {
        Path out = b.outputDir;
        Path target = out.resolve(CHECKPOINT_PREFIX + state.globalStep());
        Path tmp = out.resolve("." + CHECKPOINT_PREFIX + state.globalStep() + ".tmp");
        try {
            deleteTree(tmp);
            Files.createDirectories(tmp);
            peft.saveAdapter(adapterName(), tmp);
            try (NDScope scope = new NDScope()) {
                Map<String, NDArray> tensors = new LinkedHashMap<>(optimizer.state());
                masters.forEach((k, p) -> tensors.put(MASTER_PREFIX + k, p.array()));
                SafeTensorsWriter.write(tmp.resolve(OPTIMIZER_FILE), tensors, Map.of("format", "pt"));
            }
            state.write(tmp);
            deleteTree(target);
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            LOG.info("saved checkpoint {}", target);
            List<Path> all = checkpoints(out);
            for (int i = 0; i < all.size() - b.keepCheckpoints; i++) {
                deleteTree(all.get(i));
            }
        } catch (IOException e) {
            throw new PeftException(target + ": cannot write checkpoint: " + e.getMessage(), e);
        }
    }

    /** Replaces {@code best/} with the current adapter (written to a temporary directory, then renamed). */
    private void saveBest() {
        Path target = b.outputDir.resolve(BEST);
        Path tmp = b.outputDir.resolve("." + BEST + ".tmp");
        Path old = b.outputDir.resolve("." + BEST + ".old");
        try {
            deleteTree(tmp);
            peft.saveAdapter(adapterName(), tmp);
            deleteTree(old);
            if (Files.exists(target)) {
                Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
            }
            Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
            deleteTree(old);
        } catch (IOException e) {
            throw new PeftException(target + ": cannot save the best adapter: " + e.getMessage(), e);
        }
    }

    /**
     * The checkpoint directories of an output directory, oldest first.
     *
     * @param outputDir the trainer's output directory
     * @return {@code checkpoint-<step>} directories sorted by step
     */
    public static List<Path> checkpoints(Path outputDir) {
        if (!Files.isDirectory(outputDir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(outputDir)) {
            return s.filter(p -> Files.isDirectory(p) && p.getFileName().toString().matches(CHECKPOINT_PREFIX + "\\d+"))
                    .sorted(Comparator.comparingLong(p -> Long.parseLong(p.getFileName().toString()
                            .substring(CHECKPOINT_PREFIX.length()))))
                    .toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + outputDir + ": " + e.getMessage(), e);
        }
    }

    /** Loads master weights, optimizer state and loop state from a checkpoint. */
    private TrainerState resume(Path dir) {
        TrainerState st = TrainerState.read(dir);
        if (st.seed() != b.seed) {
            LOG.warn("resuming with seed {} from a checkpoint made with seed {}: the data order will differ", b.seed, st.seed());
        }
        if (st.globalStep() > totalSteps) {
            throw new PeftException(dir + ": checkpoint is at step " + st.globalStep() + ", past this run's " + totalSteps + " steps");
        }
        Path file = dir.resolve(OPTIMIZER_FILE);
        if (!Files.isRegularFile(file)) {
            throw new PeftException(dir + ": no " + OPTIMIZER_FILE);
        }
        try (NDManager tmp = NDManager.newBaseManager(peft.model().device());
                SafeTensorsFile f = SafeTensorsFile.open(file)) {
            Map<String, NDArray> optState = new LinkedHashMap<>();
            for (String k : f.names()) {
                if (!k.startsWith(MASTER_PREFIX)) {
                    optState.put(k, f.load(k, tmp));
                }
            }
            for (Map.Entry<String, Param> e : masters.entrySet()) {
                String key = MASTER_PREFIX + e.getKey();
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
                w.subi(w).addi(v.toType(w.getDataType(), false));
                if (masters != trainable) {
                    NDArray p = trainable.get(e.getKey()).array();
                    p.subi(p).addi(v.toType(p.getDataType(), false));
                }
            }
            optimizer.loadState(optState);
        }
        scaler.restore(st.lossScale(), st.scalerGoodSteps(), st.skippedSteps());
        metrics.truncateAfter(st.globalStep());
        LOG.info("resumed from {} at step {} (epoch {}, batch {})", dir, st.globalStep(), st.epoch(), st.batchInEpoch());
        return st;
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.delete(x);
            }
        }
    }

    /** Frees the fp32 master weights and the optimizer this trainer created. */
    @Override
    public void close() {
        if (ownsOptimizer) {
            optimizer.close();
        }
        if (masterManager != null) {
            masterManager.close();
        }
    }

    /** Configures a {@link PeftTrainer}: {@code set*} are required, {@code opt*} optional. */
    public static final class Builder {
        private PeftModel model;
        private List<Example> train;
        private List<Example> eval;
        private Optimizer optimizer;
        private double weightDecay;
        private double lr = 5e-5;
        private LrSchedule.Kind scheduler = LrSchedule.Kind.CONSTANT;
        private long warmupSteps;
        private int batchSize = 8;
        private int evalBatchSize = 8;
        private int accumulation = 1;
        private int epochs = 1;
        private long maxSteps = -1;
        private double maxGradNorm = 1.0;
        private int evalEvery;
        private String earlyStopMetric = "loss";
        private boolean greaterIsBetter;
        private int patience;
        private Path outputDir;
        private Path metricsFile;
        private int checkpointEvery;
        private int keepCheckpoints = 2;
        private long seed = 42;
        private boolean shuffle = true;
        private Collator collator = new Collator();
        private List<String> labelNames;
        private int logEvery = 10;
        private Path resumeFrom;
        private LossScaler scaler;
        private Consumer<StepInfo> listener;

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
