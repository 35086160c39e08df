package io.github.peft4j.data;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.nn.Ops;
import java.util.List;

/**
 * Pads examples to the longest one in the batch (dynamic padding) and puts them on a device.
 *
 * <p>Labels: per-token labels are padded with {@link Example#IGNORE}; examples without labels and without a
 * class id learn every real token (causal LM, labels = input ids with padding ignored); a batch of class ids
 * becomes a {@code [B]} array. A batch must not mix class ids with per-token labels.
 */
public final class Collator {
    private final int padId;
    private final boolean padLeft;

    /**
     * @param padId the token id written at padded positions (masked out, its value never matters)
     * @param padLeft pad on the left (decoder generation) instead of the right (training)
     */
    public Collator(int padId, boolean padLeft) {
        this.padId = padId;
        this.padLeft = padLeft;
    }

    /** Right padding with token id 0. */
    public Collator() {
        this(0, false);
    }

    /**
     * Pads and stacks examples.
     *
     * @param manager the manager that owns the batch's arrays (normally a step's scope)
     * @param examples at least one example
     * @return the batch
     */
    public Batch collate(NDManager manager, List<Example> examples) {
        if (examples.isEmpty()) {
            throw new IllegalArgumentException("cannot collate an empty batch");
        }
        int b = examples.size();
        int t = examples.stream().mapToInt(Example::length).max().orElseThrow();
        boolean classes = examples.get(0).label() >= 0;
        long[] ids = new long[b * t];
        long[] mask = new long[b * t];
        long[] labels = new long[classes ? b : b * t];
        long tokens = 0;
        long labelled = 0;
        for (int i = 0; i < b; i++) {
            Example e = examples.get(i);
            if ((e.label() >= 0) != classes || (classes && e.labels() != null)) {
                throw new IllegalArgumentException("example " + i + " of the batch mixes class ids with per-token labels");
            }
            int offset = padLeft ? t - e.length() : 0;
            for (int j = 0; j < t; j++) {
                int k = j - offset;
                int at = i * t + j;
                boolean real = k >= 0 && k < e.length();
                long m = real ? (e.attentionMask() == null ? 1 : e.attentionMask()[k]) : 0;
                ids[at] = real ? e.inputIds()[k] : padId;
                mask[at] = m;
                tokens += m;
                if (!classes) {
                    long label = !real || m == 0 ? Example.IGNORE : e.labels() == null ? e.inputIds()[k] : e.labels()[k];
                    labels[at] = label;
                    if (label != Example.IGNORE) {
                        labelled++;
                    }
                }
            }
            if (classes) {
                labels[i] = e.label();
            }
        }
        return new Batch(Ops.owned(manager, ids, new Shape(b, t)), Ops.owned(manager, mask, new Shape(b, t)),
                Ops.owned(manager, labels, classes ? new Shape(b) : new Shape(b, t)), b, tokens, labelled);
    }
}
