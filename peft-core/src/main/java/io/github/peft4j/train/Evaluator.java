package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Evaluation without gradients: {@code loss} (mean over labelled items, plus the active adapters'
 * {@link TrainingHooks#evaluationLoss} terms, as HF's AdaLoRA adds its regulariser) for every task; {@code perplexity}
 * ({@code exp} of the task loss alone) for causal LM; {@code accuracy} and {@code macro_f1} for classification (per token for token classification, where
 * also {@code entity_f1} over BIO spans when label names were given).
 */
final class Evaluator {
    private final PeftModel peft;
    private final TaskLoss loss;
    private final Collator collator;
    private final int batchSize;
    private final List<String> labelNames;

    /**
     * @param peft the model
     * @param loss the task loss
     * @param collator how examples are padded
     * @param batchSize examples per forward pass
     * @param labelNames token-classification label names by id, or null
     */
    Evaluator(PeftModel peft, TaskLoss loss, Collator collator, int batchSize, List<String> labelNames) {
        this.peft = peft;
        this.loss = loss;
        this.collator = collator;
        this.batchSize = batchSize;
        this.labelNames = labelNames;
    }

    /**
     * @param data the evaluation examples
     * @return the metrics by name
     */
    Map<String, Double> evaluate(List<Example> data) {
        if (data.isEmpty()) {
            throw new PeftException("PeftTrainer: the evaluation data is empty");
        }
        TaskType task = loss.task();
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
            for (int from = 0; from < data.size(); from += batchSize) {
                List<Example> chunk = data.subList(from, Math.min(data.size(), from + batchSize));
                try (NDScope scope = new NDScope()) {
                    Batch batch = collator.collate(model.manager(), chunk);
                    long n = loss.items(batch);
                    if (n == 0) {
                        continue;
                    }
                    ModelOutput out = peft.forward(batch.input());
                    lossSum += loss.loss(out, batch.labels()).getFloat() * n;
                    items += n;
                    if (task == TaskType.SEQ_CLS) {
                        long[] p = out.logits().argMax(-1).toLongArray();
                        long[] g = batch.labels().toLongArray();
                        for (int i = 0; i < g.length; i++) {
                            gold.add((int) g[i]);
                            pred.add((int) p[i]);
                        }
                    } else if (task == TaskType.TOKEN_CLS) {
                        NDArray labels = TaskLoss.alignLabels(out.logits(), batch.labels());
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
                                    if (labelNames != null) {
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
        double mean = lossSum / items;
        out.put("loss", mean + evaluationTerms());
        if (task == TaskType.CAUSAL_LM) {
            out.put("perplexity", Math.exp(mean));
        } else {
            int[] g = gold.stream().mapToInt(Integer::intValue).toArray();
            int[] p = pred.stream().mapToInt(Integer::intValue).toArray();
            out.put("accuracy", Metrics.accuracy(g, p));
            out.put("macro_f1", Metrics.macroF1(g, p));
            if (task == TaskType.TOKEN_CLS && labelNames != null) {
                out.put("entity_f1", Metrics.entityF1(goldTags, predTags));
            }
        }
        return out;
    }

    /**
     * The sum of the active adapters' {@link TrainingHooks#evaluationLoss} terms: HF adds AdaLoRA's regulariser to
     * every batch's loss, which adds it once to the mean (the parameters do not change during evaluation).
     */
    private double evaluationTerms() {
        double sum = 0;
        try (NDScope scope = new NDScope()) {
            for (TrainingHooks h : peft.activeCapabilities(TrainingHooks.class)) {
                NDArray t = h.evaluationLoss();
                if (t != null) {
                    sum += t.getFloat(); // built from fp32 leaves
                }
            }
        }
        return sum;
    }

    private String name(int id) {
        if (id < 0 || id >= labelNames.size()) {
            throw new PeftException("PeftTrainer: label id " + id + " has no name (" + labelNames.size() + " label names)");
        }
        return labelNames.get(id);
    }
}
