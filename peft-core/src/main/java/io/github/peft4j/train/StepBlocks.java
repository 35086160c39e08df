package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.model.BlockRunner;
import io.github.peft4j.nn.RecomputeTape;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.function.UnaryOperator;

/**
 * The {@link BlockRunner} of one micro-batch's forward pass in training.
 *
 * <p><b>Freeing intermediates.</b> Every block runs in its own {@link NDScope}: when it returns, every array it
 * created except its output is closed. Closing a handle only drops peft4j's reference; autograd keeps what backward
 * needs, so the memory of the intermediates backward does not read (pre-softmax scores, LoRA's {@code B(A(x))}
 * before scaling, norm temporaries, ...) is freed at once instead of when the step's scope closes.
 *
 * <p><b>Dropout.</b> Before each block libtorch's generator is seeded with a value derived from the step, the
 * micro-batch and the layer, so a block draws the same dropout masks however often it runs; the forward pass
 * therefore draws the same masks with and without gradient checkpointing and the gradients are equal.
 *
 * <p><b>Gradient checkpointing</b> ({@code checkpoint} true). Forward: each block's input is kept (detached: a
 * leaf that requires a gradient), the block runs without gradient recording, so none of its activations is kept,
 * and its output becomes a leaf that requires a gradient. The layers after the blocks (final norm, head) and the
 * loss record as usual, so the loss's backward stops at the last block's output and leaves its gradient there.
 * {@link #backward()} then takes the blocks last first: it re-runs the block from its kept input with recording
 * (same seed, the call's {@link io.github.peft4j.model.CallContext} current), backpropagates the output's
 * gradient through it (the backward of {@code sum(y · g)}), which accumulates the parameters' gradients and the
 * gradient of the block's input (the previous block's output), and frees the block's output. The first block's
 * input, if it carries a gradient (trainable embeddings, virtual tokens), finally gets its gradient backpropagated
 * into the layers before the blocks. The per-block backward keeps the graph ({@code retain_graph}), so that arrays
 * the blocks share with the layers before them (prefix tuning's key/value prefixes) can be backpropagated through
 * by every block; the retained nodes go when the block's scope closes.
 *
 * <p><b>Recomputed products</b> ({@code recompute} true, for a model with 4-bit layers trained without
 * checkpointing). Each block records as usual but from a leaf input, with a {@link RecomputeTape} open, and its
 * output is handed on as a leaf too, so the loss's backward and each block's stop at the block's boundaries. The
 * 4-bit layers' products are then not kept by autograd with their dequantised weights: the tape recomputes their input
 * gradients. {@link #backward()} takes the blocks last first: the backward of the block's output with its leaf's
 * gradient, then the tape's backward, then the block input's gradient goes to the block before. Nothing is run twice;
 * the same gradients as one autograd pass, with every 4-bit weight dense only while it is used.
 */
final class StepBlocks implements BlockRunner {
    private final long seed;
    private final boolean checkpoint;
    private final boolean recompute;
    private final List<Saved> saved = new ArrayList<>();
    private final Set<NDArray> outputs = Collections.newSetFromMap(new IdentityHashMap<>());

    /**
     * A block run from a leaf: its input leaf, what fed it (when not a previous block), its output leaf, and with
     * recomputed products its recorded output and tape.
     */
    private record Saved(int layer, NDArray input, NDArray source, NDArray output, UnaryOperator<NDArray> block,
            NDArray recorded, RecomputeTape tape) {}

    /**
     * @param seed the micro-batch's seed (the layer is mixed in per block)
     * @param checkpoint whether to checkpoint the blocks
     * @param recompute whether to record the blocks with a {@link RecomputeTape} (ignored when checkpointing)
     */
    StepBlocks(long seed, boolean checkpoint, boolean recompute) {
        this.seed = seed;
        this.checkpoint = checkpoint;
        this.recompute = recompute && !checkpoint;
    }

    /**
     * A seed derived from two values (SplitMix64's finaliser over their combination).
     *
     * @param a a value
     * @param b another
     * @return the mixed seed
     */
    static long mix(long a, long b) {
        long z = a * 0x9E3779B97F4A7C15L + b + 0x632BE59BD9B4E019L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return (z ^ (z >>> 31)) & Long.MAX_VALUE;
    }

    @Override
    public NDArray run(int layer, NDArray input, UnaryOperator<NDArray> block) {
        JniUtils.setSeed(mix(seed, layer));
        if (!checkpoint && !recompute) {
            return scoped(block, input);
        }
        NDArray in = input;
        NDArray source = null;
        if (!outputs.contains(input)) { // the first block: its input comes from the layers before the blocks
            source = input;
            in = input.stopGradient();
            in.setRequiresGradient(true);
        }
        NDArray out;
        NDArray recorded = null;
        RecomputeTape tape = null;
        if (recompute) {
            tape = RecomputeTape.open();
            try {
                recorded = scoped(block, in);
            } finally {
                tape.deactivate();
            }
            out = recorded.stopGradient();
        } else {
            boolean grad = JniUtils.isGradMode();
            JniUtils.setGradMode(false);
            try {
                out = scoped(block, in);
            } finally {
                JniUtils.setGradMode(grad);
            }
        }
        out.setRequiresGradient(true);
        outputs.add(out);
        saved.add(new Saved(layer, in, source, out, block, recorded, tape));
        return out;
    }

    /** Runs a block in its own scope; only its output survives (in the caller's scope). */
    private static NDArray scoped(UnaryOperator<NDArray> block, NDArray input) {
        NDArray out;
        try (NDScope scope = new NDScope()) {
            out = block.apply(input);
            NDScope.unregister(out);
        }
        NDScope.register(out);
        return out;
    }

    /** @return whether this runner records the blocks with a {@link RecomputeTape} */
    boolean recomputes() {
        return recompute;
    }

    /** @return whether blocks were run from leaves in this forward pass and wait for {@link #backward()} */
    boolean pending() {
        return !saved.isEmpty();
    }

    /**
     * After the loss's backward: recomputes the checkpointed blocks last first and backpropagates through each (see
     * the class comment). Must run with gradient recording on (inside the step's gradient collector) and with the
     * forward call's context current.
     */
    void backward() {
        for (int k = saved.size() - 1; k >= 0; k--) {
            Saved s = saved.get(k);
            try (NDScope scope = new NDScope()) {
                NDArray g = JniUtils.getGradient((PtNDArray) s.output());
                if (s.tape() != null) {
                    if (g != null) {
                        JniUtils.backward((PtNDArray) s.recorded(), (PtNDArray) g, true, false);
                    }
                    s.tape().backward();
                } else if (g != null) {
                    JniUtils.setSeed(mix(seed, s.layer()));
                    NDArray y = s.block().apply(s.input());
                    JniUtils.backward((PtNDArray) y, (PtNDArray) g, true, false);
                }
                if (s.source() != null) {
                    NDArray gi = JniUtils.getGradient((PtNDArray) s.input());
                    if (gi != null) {
                        RecomputeTape.backwardIfRecorded(s.source(), gi); // the layers before the blocks
                    }
                }
            }
            outputs.remove(s.output());
            s.output().close(); // the output leaf and its gradient: the next block down no longer needs them
            if (s.tape() != null) {
                s.tape().close();
                s.recorded().close(); // the block's graph goes with its last handle
            }
            if (s.source() != null || !outputs.contains(s.input())) {
                s.input().close();
            }
        }
        saved.clear();
    }
}
