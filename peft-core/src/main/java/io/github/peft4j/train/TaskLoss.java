package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TaskType;

/**
 * The training loss of a task head ({@link Losses}) and what it averages over: the number of labelled items of a
 * batch weights its micro-batch within an accumulated step and its share of an evaluation's mean loss.
 */
final class TaskLoss {
    private final TaskType task;

    /**
     * @param task the model's task (not FEATURE_EXTRACTION)
     */
    TaskLoss(TaskType task) {
        this.task = task;
    }

    /** @return the task */
    TaskType task() {
        return task;
    }

    /**
     * The number of items the batch's mean loss averages over.
     *
     * @param batch a collated batch
     * @return examples for classification, labelled (shifted) tokens otherwise
     */
    long items(Batch batch) {
        if (task == TaskType.SEQ_CLS) {
            return batch.size();
        }
        if (task == TaskType.CAUSAL_LM) {
            // the shifted loss never uses the first position's label
            return batch.labels().get(new NDIndex(":, 1:")).neq(Example.IGNORE).sum().getLong();
        }
        return batch.labelledTokens();
    }

    /**
     * The task's mean loss in fp32, on the gradient path; labels are padded on the left when virtual tokens were
     * prepended to the logits.
     *
     * @param out the model output
     * @param labels the batch labels
     * @return a 0-d fp32 array
     */
    NDArray loss(ModelOutput out, NDArray labels) {
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

    /**
     * @param logits {@code [B, T', C]}
     * @param labels {@code [B, T]} with {@code T <= T'}
     * @return the labels with {@code T' - T} ignored positions prepended
     */
    static NDArray alignLabels(NDArray logits, NDArray labels) {
        long extra = logits.getShape().get(1) - labels.getShape().get(1);
        if (extra <= 0) {
            return labels;
        }
        NDArray pad = labels.getManager().full(new Shape(labels.getShape().get(0), extra), Example.IGNORE, labels.getDataType());
        return pad.concat(labels, 1);
    }
}
