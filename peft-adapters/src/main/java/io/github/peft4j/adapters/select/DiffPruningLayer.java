package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ProjectionWrapper;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * Diff pruning over a dense projection's weight (kept as {@code base_layer}): each adapter owns a difference
 * {@code diff_weight.<adapter>} (zeros at the start) and gate logits {@code diff_log_alpha.<adapter>}, both fp32 in the
 * weight's stored shape. The forward pass uses {@code W + z ⊙ w} in one {@code linear} call, with the hard-concrete gate
 * {@code z = min(1, max(0, s (zeta - gamma) + gamma))}: in training mode {@code s = sigmoid((ln u - ln(1 - u) + log_alpha)
 * / beta)} for fresh uniform noise {@code u}, in evaluation mode {@code s = sigmoid(log_alpha)} (deterministic). Merging
 * adds the evaluation-mode {@code z ⊙ w} to the base weight; unmerging subtracts it.
 */
public final class DiffPruningLayer extends ProjectionWrapper {
    /** Local parameter name prefix of the difference; saved as {@code <module path>.diff_weight}. */
    public static final String WEIGHT = "diff_weight";
    /** Local parameter name prefix of the gate logits; saved as {@code <module path>.diff_log_alpha}. */
    public static final String LOG_ALPHA = "diff_log_alpha";
    /** Hard-concrete temperature. */
    public static final double BETA = 2.0 / 3.0;
    /** Lower end of the stretched interval. */
    public static final double GAMMA = -0.1;
    /** Upper end of the stretched interval. */
    public static final double ZETA = 1.1;
    private static final double NOISE_EPS = 1e-6;
    private final Set<String> adapters = new LinkedHashSet<>();
    private final Set<String> merged = new LinkedHashSet<>();

    /**
     * @param base the projection in the slot; it must have dense weights
     * @param state the shared active-adapter state
     * @param path the module path, for messages
     */
    public DiffPruningLayer(Projection base, AdapterState state, String path) {
        super(base, state);
        if (base.dense() == null) {
            throw new PeftException("DIFF_PRUNING: module '" + path + "' is a " + base.getClass().getSimpleName()
                    + " without dense weights (quantised, or wrapped by another method); diff pruning needs a dense weight");
        }
    }

    /**
     * Adds an adapter: a zero difference and constant gate logits.
     *
     * @param adapter the adapter name
     * @param logAlphaInit the initial gate logit
     * @param path the module path, for messages
     */
    public void addAdapter(String adapter, double logAlphaInit, String path) {
        if (!adapters.add(adapter)) {
            throw new PeftException("module '" + path + "' already has diff pruning for adapter '" + adapter + "'");
        }
        NDManager m = denseBase().weight().array().getManager();
        Shape s = denseBase().weight().shape();
        register(WEIGHT + "." + adapter, new Param(m.zeros(s, DataType.FLOAT32)));
        register(LOG_ALPHA + "." + adapter, new Param(m.full(s, (float) logAlphaInit, DataType.FLOAT32)));
    }

    /**
     * @param adapter an adapter on this layer
     * @return its difference {@code w}
     */
    public Param diff(String adapter) {
        return param(WEIGHT, adapter);
    }

    /**
     * @param adapter an adapter on this layer
     * @return its gate logits
     */
    public Param logAlpha(String adapter) {
        return param(LOG_ALPHA, adapter);
    }

    private Param param(String prefix, String adapter) {
        Param p = localParameters().get(prefix + "." + adapter);
        if (p == null) {
            throw new PeftException("diff pruning layer has no adapter '" + adapter + "'; it has " + adapters);
        }
        return p;
    }

    /**
     * The gate values.
     *
     * @param adapter the adapter
     * @param stochastic true for a training-mode sample, false for the deterministic evaluation gate
     * @return {@code z} (fp32, the weight's shape), on the gradient path of the logits
     */
    public NDArray gate(String adapter, boolean stochastic) {
        NDArray la = logAlpha(adapter).array();
        NDArray s;
        if (stochastic) {
            NDArray noise;
            boolean grad = JniUtils.isGradMode();
            JniUtils.setGradMode(false);
            try {
                NDArray u = la.getManager().randomUniform((float) NOISE_EPS, (float) (1 - NOISE_EPS), la.getShape(), DataType.FLOAT32);
                noise = u.log().sub(u.neg().add(Ops.scalar(u, 1.0)).log()); // ln u - ln(1 - u), a constant
            } finally {
                JniUtils.setGradMode(grad);
            }
            s = Activation.sigmoid(la.add(noise).mul(Ops.scalar(la, 1.0 / BETA)));
        } else {
            s = Activation.sigmoid(la);
        }
        NDArray stretched = s.mul(Ops.scalar(s, ZETA - GAMMA)).add(Ops.scalar(s, GAMMA));
        return stretched.maximum(Ops.scalar(s, 0.0)).minimum(Ops.scalar(s, 1.0));
    }

    /**
     * The expected number of open gates, {@code sum(sigmoid(log_alpha - beta ln(-gamma / zeta)))} (the L0 norm's
     * expectation), on the gradient path of the logits.
     *
     * @param adapter the adapter
     * @return a 0-d fp32 array
     */
    public NDArray expectedOpen(String adapter) {
        NDArray la = logAlpha(adapter).array();
        NDArray shifted = la.sub(Ops.scalar(la, BETA * Math.log(-GAMMA / ZETA)));
        return Activation.sigmoid(shifted).sum();
    }

    /**
     * @param adapter the adapter
     * @return the number of entries whose evaluation-mode gate is open ({@code z > 0})
     */
    public long openGates(String adapter) {
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            return gate(adapter, false).gt(Ops.scalar(logAlpha(adapter).array(), 0.0)).countNonzero().getLong();
        } finally {
            JniUtils.setGradMode(grad);
        }
    }

    /** @return the number of entries of the weight (per adapter: the gates' count) */
    public long size() {
        return denseBase().weight().shape().size();
    }

    @Override
    public NDArray forward(NDArray x) {
        NDArray w = null;
        DataType dt = x.getDataType();
        for (String a : adapters) {
            if (!state.isActive(a) || merged.contains(a)) {
                continue;
            }
            NDArray delta = Ops.cast(gate(a, isTraining()).mul(diff(a).array()), dt);
            w = (w == null ? Ops.cast(denseBase().weight().array(), dt) : w).add(delta);
        }
        if (w == null) {
            return base().forward(x);
        }
        Param bias = denseBase().bias();
        NDArray b = bias == null ? null : Ops.cast(bias.array(), dt);
        return Ops.linear(x, denseBase().fanInFanOut() ? w.transpose() : w, b);
    }

    @Override
    public Set<String> adapterNames() {
        return Collections.unmodifiableSet(adapters);
    }

    @Override
    public boolean isMerged(String adapter) {
        return merged.contains(adapter);
    }

    @Override
    public boolean canMerge() {
        return true;
    }

    /** Adds the evaluation-mode {@code z ⊙ w} to the base weight. */
    @Override
    public void merge(String adapter) {
        if (!merged.contains(adapter)) {
            shift(adapter, false);
            merged.add(adapter);
        }
    }

    /** Subtracts the merged {@code z ⊙ w} again. */
    @Override
    public void unmerge(String adapter) {
        if (merged.remove(adapter)) {
            shift(adapter, true);
        }
    }

    private void shift(String adapter, boolean subtract) {
        Param weight = denseBase().weight();
        NDArray w = weight.array();
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            NDArray delta = Ops.ownedCopy(gate(adapter, false).mul(diff(adapter).array()), w.getManager(), w.getDataType());
            NDArray next = subtract ? w.sub(delta) : w.add(delta);
            delta.close();
            weight.set(Ops.ownedCopy(next, w.getManager(), w.getDataType()));
        } finally {
            JniUtils.setGradMode(grad);
        }
    }

    @Override
    public void removeAdapter(String adapter) {
        if (adapters.contains(adapter)) { // a merged adapter stays in the weights (mergeAndUnload), as IA3's
            merged.remove(adapter);
            adapters.remove(adapter);
            unregister(WEIGHT + "." + adapter).array().close();
            unregister(LOG_ALPHA + "." + adapter).array().close();
        }
    }
}
