package io.github.peft4j.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.RecomputeTape;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.TrainingHooks;
import io.github.peft4j.peft.TrainingHooks.TrainingStep;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One call of {@link PeftTrainer#train()}: the step loop. Every optimizer step runs in one {@link NDScope}, in the
 * order of Hugging Face's loop with PEFT training hooks, for the {@link TrainingHooks} of every active trainable
 * adapter:
 * <ol>
 *   <li>for each micro-batch, in its own scope: forward (blocks run by a {@link StepBlocks}: each block's
 *       intermediates freed when it returns, dropout seeded per block, with gradient checkpointing no activations
 *       kept), task loss (fp32) plus every hook's {@link TrainingHooks#extraLoss}, backward of that sum times the
 *       micro-batch's share of the step's labelled items (times the loss scale in fp16), then with gradient
 *       checkpointing the blocks' recomputation and backward, last block first;</li>
 *   <li>unscale the gradients (fp16), then {@link TrainingHooks#afterBackward};</li>
 *   <li>without loss scaling (fp32): a NaN or infinite loss or gradient stops training with a {@link PeftException}
 *       naming the step and the newest checkpoint, before the update (so nothing non-finite is ever saved);</li>
 *   <li>one fused reduction: finiteness (fp16) and global norm; clip;</li>
 *   <li>the optimizer update, unless fp16 found an inf or NaN: then the step is skipped, the scale lowered, the
 *       schedule does not advance, and the gradients are zeroed;</li>
 *   <li>{@link TrainingHooks#afterStep} (also on a skipped step, as HF's loop calls AdaLoRA's
 *       {@code update_and_allocate} after every {@code optimizer.step()}, which GradScaler may have skipped; the hooks
 *       then see zero gradients, never inf or NaN);</li>
 *   <li>zero the gradients.</li>
 * </ol>
 */
final class TrainingLoop {
    private static final Logger LOG = LoggerFactory.getLogger(PeftTrainer.class);

    private final PeftTrainer t;
    private final PeftTrainer.Builder b;

    private final boolean recompute;

    TrainingLoop(PeftTrainer trainer) {
        this.t = trainer;
        this.b = trainer.b;
        long fourBit = t.peft.model().modules().values().stream().filter(m -> m instanceof Linear4bit).count();
        this.recompute = fourBit > 0 || t.peft.model().recordsThroughTape();
        if (recompute && !b.gradientCheckpointing) {
            LOG.debug("blocks recorded with a RecomputeTape ({} 4-bit layers)", fourBit);
        }
    }

    PeftTrainer.TrainResult run() {
        TransformerModel model = t.peft.model();
        LossScaler scaler = t.precision.scaler();
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
        Progress progress = Progress.auto(step, t.totalSteps, b.logEvery);
        List<Integer> order = order(epoch);
        long startNanos = System.nanoTime();
        long tokensThisRun = 0;
        LOG.info("training {} parameters ({} tensors) for {} steps: {} examples, batch {} x {} accumulation, {} lr {} "
                + "warmup {}, {}", t.trainable.values().stream().mapToLong(Param::numel).sum(), t.trainable.size(),
                t.totalSteps, b.train.size(), b.batchSize, b.accumulation, b.scheduler, b.lr, b.warmupSteps,
                t.precision.describe());
        model.train(true);
        try {
            while (step < t.totalSteps && !t.stopRequested) {
                if (pos >= t.batchesPerEpoch) {
                    epoch++;
                    pos = 0;
                    order = order(epoch);
                }
                int micro = Math.min(b.accumulation, t.batchesPerEpoch - pos);
                Engine.getInstance().setRandomSeed((int) (b.seed + step));
                double lr = t.schedule.rate(schedStep);
                TrainingStep now = new TrainingStep(step + 1, t.totalSteps);
                double loss;
                boolean skipped;
                long tokens = 0;
                try (NDScope scope = new NDScope()) {
                    List<TrainingHooks> hooks = t.peft.activeCapabilities(TrainingHooks.class);
                    List<Batch> batches = new ArrayList<>();
                    long[] counts = new long[micro];
                    long total = 0;
                    for (int i = 0; i < micro; i++) {
                        Batch batch = b.collator.collate(model.manager(), slice(order, pos + i));
                        batches.add(batch);
                        counts[i] = t.taskLoss.items(batch);
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
                        loss += microBatch(model, batches.get(i), share, hooks, now, step, i);
                    }
                    skipped = !update(lr, hooks, now, loss);
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
                if (b.eval != null && b.evalEvery > 0 && step % b.evalEvery == 0 || b.eval != null && step == t.totalSteps) {
                    progress.breakLine();
                    eval = t.evaluator.evaluate(b.eval);
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
                            t.checkpoints.saveBest();
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
                t.metrics.step(step, loss, lr, tps, eval);
                progress.update(step, loss, lr, tps);
                if (b.listener != null) {
                    b.listener.accept(new PeftTrainer.StepInfo(step, epoch, loss, lr, skipped, eval));
                }
                TrainerState state = new TrainerState(step, epoch, pos, schedStep, b.seed, scaler.scale(),
                        scaler.goodSteps(), scaler.skippedSteps(), best, bestStep, patienceUsed, tokensSeen);
                boolean last = step == t.totalSteps || stoppedEarly || t.stopRequested;
                if (b.outputDir != null && (b.checkpointEvery > 0 && step % b.checkpointEvery == 0 || last && b.checkpointEvery > 0)) {
                    if (lastCheckpoint != step) {
                        t.checkpoints.write(state);
                        lastCheckpoint = step;
                    }
                }
                if (b.outputDir != null && eval != null) {
                    t.metrics.writeChart(b.outputDir.resolve(PeftTrainer.CHART));
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
            t.metrics.writeChart(b.outputDir.resolve(PeftTrainer.CHART));
        }
        return new PeftTrainer.TrainResult(step, losses, lastEval, best == null ? Double.NaN : best, bestStep, stoppedEarly);
    }

    /**
     * Forward, loss and backward of one micro-batch in its own scope (its arrays are freed when it ends), the blocks
     * run by a {@link StepBlocks} (each block's intermediates freed when it returns; with gradient checkpointing,
     * recomputed in backward), the logits closed once the loss has consumed them.
     *
     * @return the micro-batch's loss times its share
     */
    private double microBatch(TransformerModel model, Batch batch, double share, List<TrainingHooks> hooks,
            TrainingStep now, long step, int index) {
        if (index > 0) { // the first micro-batch draws from the step's seed; later ones from their own
            JniUtils.setSeed(StepBlocks.mix(b.seed + step, -index));
        }
        StepBlocks blocks = new StepBlocks(StepBlocks.mix(b.seed + step, index), b.gradientCheckpointing, recompute);
        ModelInput input = batch.input();
        try (NDScope scope = new NDScope();
                GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            NDArray l;
            try (TransformerModel.RunnerScope rs = model.useBlockRunner(blocks)) {
                ModelOutput out = t.peft.forward(input);
                l = t.taskLoss.loss(out, batch.labels());
                out.logits().close(); // consumed: the loss's backward keeps what it needs
            }
            NDArray task = Ops.cast(l, DataType.FLOAT32);
            l = withExtraTerms(task, hooks, now, blocks.pending() && !blocks.recomputes());
            double value = l.getFloat() * share;
            NDArray target = t.precision.forBackward(l, share);
            if (blocks.recomputes() && l != task) {
                // an extra term may read the blocks' graphs, which their own backward traverses after this one
                JniUtils.backward((PtNDArray) target, (PtNDArray) target.onesLike(), true, false);
            } else {
                gc.backward(target);
            }
            if (blocks.pending()) {
                try (AdapterState.CallScope call = t.peft.state().enter(input.context())) {
                    blocks.backward();
                }
            }
            return value;
        }
    }

    /**
     * The micro-batch's loss plus every hook's extra term (each a 0-d array on the parameters' gradient path). With
     * gradient checkpointing a term must be on the gradient path (a term computed from arrays a layer kept during
     * the forward pass, which ran without recording, is not).
     */
    private static NDArray withExtraTerms(NDArray loss, List<TrainingHooks> hooks, TrainingStep now, boolean checkpointed) {
        NDArray l = loss;
        for (TrainingHooks h : hooks) {
            NDArray extra = h.extraLoss(now);
            if (extra == null) {
                continue;
            }
            if (extra.getShape().dimension() != 0) {
                throw new PeftException("PeftTrainer: " + h.getClass().getSimpleName() + ".extraLoss returned shape "
                        + extra.getShape() + " at step " + now.step() + "; expected a 0-d array");
            }
            if (checkpointed && !recorded(extra)) {
                throw new PeftException("PeftTrainer: " + h.getClass().getSimpleName() + ".extraLoss at step " + now.step()
                        + " has no gradient path under gradient checkpointing (it reads arrays kept from the forward pass,"
                        + " which runs without gradient recording); train this adapter without gradient checkpointing");
            }
            l = l.add(Ops.cast(extra, DataType.FLOAT32));
        }
        return l;
    }

    /**
     * Whether a 0-d term is on a gradient path: the backward of {@code 0 · term} (keeping the graph) succeeds. DJL
     * cannot tell a recorded non-leaf from a constant otherwise.
     */
    private static boolean recorded(NDArray term) {
        try (NDScope scope = new NDScope()) {
            return RecomputeTape.backwardIfRecorded(term.mul(Ops.scalar(term, 0)), term.onesLike());
        }
    }

    /**
     * Unscale, after-backward hooks, check and clip, update, after-step hooks; zeroes every gradient.
     *
     * @return false if the step was skipped for an overflow
     */
    private boolean update(double lr, List<TrainingHooks> hooks, TrainingStep now, double loss) {
        Collection<Param> params = t.trainable.values();
        t.precision.unscale(params);
        hooks.forEach(h -> h.afterBackward(now));
        if (!t.precision.scaler().enabled()) { // with fp16 loss scaling the scaler skips such a step instead
            stopIfNotFinite(now.step(), loss, params);
        }
        boolean take = t.precision.checkAndClip(params, b.maxGradNorm);
        if (take) {
            t.optimizer.update(t.trainable, lr);
        } else {
            LOG.warn("inf/NaN gradients at step {}: step skipped, loss scale lowered to {}", now.step(),
                    t.precision.scaler().scale());
            Gradients.zero(params);
        }
        hooks.forEach(h -> h.afterStep(now));
        Gradients.zero(params);
        return take;
    }

    /**
     * Without a loss scaler, a NaN or infinite loss or gradient would poison the trainable parameters (and every
     * checkpoint after it): training stops before the update, with an error naming the step and the newest
     * checkpoint, which still holds the last good values.
     */
    private void stopIfNotFinite(long step, double loss, Collection<Param> params) {
        String what = null;
        if (!Double.isFinite(loss)) {
            what = "the loss is " + loss;
        } else {
            double norm = GradClip.norm(params);
            if (!Double.isFinite(norm)) {
                what = "the gradients are not finite (global norm " + norm + ")";
            }
        }
        if (what == null) {
            return;
        }
        Gradients.zero(params);
        List<Path> saved = b.outputDir == null ? List.of() : Checkpoints.list(b.outputDir);
        throw new PeftException("PeftTrainer: step " + step + ": " + what + "; training stopped before this step's "
                + "update, so the parameters hold step " + (step - 1) + "'s values and "
                + (saved.isEmpty() ? "no checkpoint was written yet" : "the newest checkpoint is "
                        + saved.get(saved.size() - 1))
                + " (lower the learning rate, clip gradients or check the data, then resume from it)");
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

    /** Loads the trainable parameters, optimizer state and loop state from a checkpoint. */
    private TrainerState resume(Path dir) {
        TrainerState st = t.checkpoints.load(dir, b.seed, t.totalSteps);
        t.precision.scaler().restore(st.lossScale(), st.scalerGoodSteps(), st.skippedSteps());
        t.metrics.truncateAfter(st.globalStep());
        LOG.info("resumed from {} at step {} (epoch {}, batch {})", dir, st.globalStep(), st.epoch(), st.batchInEpoch());
        return st;
    }
}
