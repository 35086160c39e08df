package io.github.peft4j.nn;

import ai.djl.engine.EngineException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;

/**
 * Products whose input gradient is recomputed in backward instead of kept by autograd: what a custom autograd
 * function (bitsandbytes' {@code MatMul4Bit}) does, expressed with stock DJL ops.
 *
 * <p>Autograd keeps the dense operand of every matrix product for the input's gradient; for a 4-bit layer that is its
 * dequantised weight, so a plain training step holds the whole base dense until backward. With a tape open (the
 * trainer opens one per transformer block when gradient checkpointing is off and the model has such layers or says
 * it {@linkplain io.github.peft4j.model.TransformerModel#recordsThroughTape records through one}), a
 * layer instead computes its product without recording and {@linkplain #output hands the result to the tape}: the
 * tape returns {@code y0 + z}, where {@code z} is a zero, stride-0 leaf that requires a gradient (a few bytes: the
 * addition saves nothing), so the block's backward leaves {@code dL/dy} in {@code z}'s gradient and keeps neither the
 * weight nor {@code y0}. {@link #backward()} then takes the recorded inputs last first: the gradient of an input is
 * what its wrappers' paths left in its {@linkplain #input shared leaf} plus, for every product that read it, the
 * layer's {@code inputGradient(dL/dy)} (for a linear layer {@code dL/dy · W} with {@code W} dequantised again), and it
 * is backpropagated into the graph that produced the input (the backward of {@code sum(x · g)}). Taking the inputs in
 * the reverse of the order they were first seen is a reverse topological order, so every gradient is complete when it
 * is read, and because wrappers read the shared leaf every node of the block is backpropagated through once per
 * gradient that reaches it, as in one autograd pass.
 *
 * <p>The tape is per thread and must be used in this order: {@link #open()}, the block's forward pass, {@link
 * #deactivate()}, the backward of the block's output, {@link #backward()}, {@link #close()}. The arrays the tape holds
 * are taken out of the current {@link NDScope} (the block's) and closed by {@link #close()}.
 */
public final class RecomputeTape implements AutoCloseable {
    private static final ThreadLocal<RecomputeTape> ACTIVE = new ThreadLocal<>();

    private final Map<NDArray, Cut> byArray = new IdentityHashMap<>();
    private final List<Cut> cuts = new ArrayList<>();

    /** The tape's outputs, by array. */
    private final Map<NDArray, Output> outputs = new IdentityHashMap<>();
    /** The output each zero leaf is part of. */
    private final Map<NDArray, Output> ofLeaf = new IdentityHashMap<>();

    /**
     * One of the tape's outputs, {@code y0 + z1 + ...}: its zero leaves, and the gradient {@link #backward()} routed
     * to it (when an input is this output), with how many of its leaves have yet to read that gradient.
     */
    private static final class Output {
        final List<NDArray> zeros = new ArrayList<>();
        NDArray routed;
        int unread;
    }

    /**
     * One input: the tape's handle on it (null where it is one of the tape's own outputs and no gradient function
     * reads its values: its gradient is then routed to that output's zero leaves, and its storage is not kept), its
     * shared leaf (if a wrapper asked for it), the products that read it.
     */
    private static final class Cut {
        NDArray input;
        final Output route;
        NDArray leaf;
        final List<NDArray> zeros = new ArrayList<>();
        final List<UnaryOperator<NDArray>> gradients = new ArrayList<>();

        Cut(NDArray input, Output route) {
            this.input = input;
            this.route = route;
        }
    }

    private RecomputeTape() {}

    /**
     * Opens a tape on this thread (replacing none: at most one is active).
     *
     * @return the new active tape
     * @throws IllegalStateException when one is already active
     */
    public static RecomputeTape open() {
        if (ACTIVE.get() != null) {
            throw new IllegalStateException("RecomputeTape: a tape is already active on this thread");
        }
        RecomputeTape t = new RecomputeTape();
        ACTIVE.set(t);
        return t;
    }

    /**
     * The active tape, if gradients are being recorded.
     *
     * @return this thread's active tape, or null when there is none or gradient recording is off
     */
    public static RecomputeTape active() {
        RecomputeTape t = ACTIVE.get();
        return t != null && JniUtils.isGradMode() ? t : null;
    }

    /** Stops recording products on this thread (the block's forward pass is over); the tape keeps what it holds. */
    public void deactivate() {
        if (ACTIVE.get() == this) {
            ACTIVE.remove();
        }
    }

    private Cut cut(NDArray x) {
        Output route = outputs.get(x);
        Cut c = new Cut(route == null ? view(x) : null, route);
        byArray.put(x, c);
        cuts.add(c);
        return c;
    }

    /** The tape's own handle on an array's graph node (a view: no copy), out of the current scope. */
    private static NDArray view(NDArray x) {
        NDArray v = x.reshape(x.getShape());
        NDScope.unregister(v);
        return v;
    }

    /**
     * The tape's own handle on an input, kept until {@link #close()}: what a recorded operation's gradient function
     * reads (the caller's handle may be closed when the block returns). Gradient recording must be on.
     *
     * @param x an input on the graph
     * @return a view of it (no copy) that the tape owns
     */
    public NDArray retained(NDArray x) {
        Cut c = byArray.get(x);
        if (c == null) {
            c = cut(x);
        }
        if (c.input == null) {
            c.input = view(x);
        }
        return c.input;
    }

    /**
     * The array that a product and the layers wrapping it should both read for an input: a leaf sharing the input's
     * storage, so the wrappers' gradient paths stop there and reach the input's graph once, together with the
     * products' recomputed gradients. The same leaf for the same input (or for the leaf itself).
     *
     * @param x the input on the graph
     * @return its shared leaf
     */
    public NDArray input(NDArray x) {
        Cut c = byArray.get(x);
        if (c == null) {
            c = cut(x);
        } else if (c.leaf == x) {
            return x;
        }
        if (c.leaf == null) {
            c.leaf = x.stopGradient();
            c.leaf.setRequiresGradient(true);
            NDScope.unregister(c.leaf);
            byArray.put(c.leaf, c);
        }
        return c.leaf;
    }

    /**
     * Records a product computed without gradient recording and returns it on the gradient path.
     *
     * @param x the input the product read (an array on the graph, or the leaf {@link #input} gave for it); gradient
     *     recording must be on
     * @param y0 the product, computed without recording; the tape closes it
     * @param inputGradient the input's gradient from the product's output gradient ({@code g -> g · W})
     * @return {@code y0} plus a zero leaf whose gradient the block's backward fills (a new array)
     */
    public NDArray output(NDArray x, NDArray y0, UnaryOperator<NDArray> inputGradient) {
        Cut c = byArray.get(x);
        if (c == null) {
            c = cut(x);
        }
        NDArray leaf;
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDArray one = y0.getManager().zeros(new Shape(1), y0.getDataType());
                NDArray zeros = one.broadcast(y0.getShape())) {
            leaf = zeros.stopGradient();
        } finally {
            JniUtils.setGradMode(grad);
        }
        leaf.setRequiresGradient(true);
        NDScope.unregister(leaf);
        c.zeros.add(leaf);
        c.gradients.add(inputGradient);
        NDArray y = y0.add(leaf);
        Output o = new Output();
        Output before = outputs.remove(y0); // y0 itself an output of the tape: y = y0's leaves + leaf
        if (before != null) {
            o.zeros.addAll(before.zeros);
        }
        o.zeros.add(leaf);
        outputs.put(y, o);
        o.zeros.forEach(z -> ofLeaf.put(z, o));
        y0.close(); // consumed: the addition keeps nothing
        return y;
    }

    /**
     * A product {@code x Wᵀ (+ bias)} with a frozen weight, recorded on this tape: computed without recording, its
     * input gradient {@code dL/dy · W} recomputed in backward.
     *
     * @param x the input (or its {@linkplain #input shared leaf})
     * @param weight the {@code (out, in)} weight in a given dtype (called in forward and again in backward)
     * @param owned whether the arrays {@code weight} returns are new ones to close after use (a dequantised
     *     weight), rather than the layer's own or temporaries of the current scope
     * @param bias the bias in the input's dtype, added on the gradient path, or null
     * @return the product
     */
    public NDArray linear(NDArray x, java.util.function.Function<DataType, NDArray> weight, boolean owned, NDArray bias) {
        NDArray y0;
        JniUtils.setGradMode(false);
        try {
            NDArray w = weight.apply(x.getDataType());
            try {
                y0 = ai.djl.nn.core.Linear.linear(x, w, null).head();
            } finally {
                if (owned) {
                    w.close();
                }
            }
        } finally {
            JniUtils.setGradMode(true);
        }
        NDArray y = output(x, y0, g -> {
            NDArray w = weight.apply(g.getDataType());
            try {
                return g.matMul(w);
            } finally {
                if (owned) {
                    w.close();
                }
            }
        });
        if (bias == null) {
            return y;
        }
        try (NDArray unbiased = y) {
            return unbiased.add(bias);
        }
    }

    /**
     * Backpropagates the recorded products' input gradients, last input first (see the class comment). Runs after the
     * backward of the block's output, with gradient recording on.
     */
    public void backward() {
        for (int k = cuts.size() - 1; k >= 0; k--) {
            Cut c = cuts.get(k);
            try (NDScope scope = new NDScope()) {
                NDArray g = c.leaf == null ? null : JniUtils.getGradient((PtNDArray) c.leaf);
                for (int j = 0; j < c.zeros.size(); j++) {
                    NDArray z = c.zeros.get(j);
                    NDArray gy = sum(JniUtils.getGradient((PtNDArray) z), takeRouted(z));
                    if (gy == null) {
                        continue;
                    }
                    NDArray gx;
                    JniUtils.setGradMode(false); // the gradient is a value, not a graph
                    try {
                        gx = c.gradients.get(j).apply(gy);
                    } finally {
                        JniUtils.setGradMode(true);
                    }
                    g = sum(g, gx);
                }
                if (g == null) {
                    continue;
                }
                if (c.route != null) { // the input is y0 + z1 + ...: each z's gradient is the input's
                    NDArray total = sum(c.route.routed, g);
                    NDScope.unregister(total);
                    c.route.routed = total;
                    c.route.unread = c.route.zeros.size();
                } else {
                    backwardIfRecorded(c.input, g);
                }
            }
        }
    }

    /**
     * The gradient routed to a zero leaf's output, if any, registered in the current scope once its last leaf has read
     * it (so that it is closed with that scope).
     */
    private NDArray takeRouted(NDArray z) {
        Output o = ofLeaf.get(z);
        NDArray g = o == null ? null : o.routed;
        if (g != null && --o.unread == 0) {
            o.routed = null;
            NDScope.register(g);
        }
        return g;
    }

    private static NDArray sum(NDArray a, NDArray b) {
        return a == null ? b : b == null ? a : a.add(b);
    }

    /**
     * Backpropagates a gradient into an array if it is on a gradient path (libtorch says which: DJL cannot tell a
     * recorded non-leaf from a constant, its {@code requiresGrad} answers false for both). Keeps the graph.
     *
     * @param x the array
     * @param grad its gradient
     * @return whether it was on a gradient path (false: nothing was done)
     */
    public static boolean backwardIfRecorded(NDArray x, NDArray grad) {
        try {
            JniUtils.backward((PtNDArray) x, (PtNDArray) grad, true, false);
            return true;
        } catch (EngineException e) {
            if (!String.valueOf(e.getMessage()).contains("does not require grad")) {
                throw e;
            }
            return false;
        }
    }

    /** Closes what the tape holds (the inputs' handles, the leaves and their gradients). */
    @Override
    public void close() {
        deactivate();
        for (Cut c : cuts) {
            for (NDArray z : c.zeros) {
                z.close();
            }
            if (c.leaf != null) {
                c.leaf.close();
            }
            if (c.input != null) {
                c.input.close();
            }
        }
        for (Output o : ofLeaf.values()) {
            if (o.routed != null) {
                o.routed.close();
            }
        }
        ofLeaf.clear();
        outputs.clear();
        cuts.clear();
        byArray.clear();
    }
}
