package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Param;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * What AdamW and SGD share: the update loop (no gradient recording, one scope for the temporaries), per-parameter
 * buffers that outlive steps, weight-decay exclusions and the
 * checkpoint state.
 */
abstract class BaseOptimizer implements Optimizer {
    /** Default weight-decay exclusion: biases and normalisation weights (HF Trainer's rule, by name). */
    static final Predicate<String> DEFAULT_DECAY_EXCLUDED = name -> name.endsWith("bias") || name.endsWith(".bias")
            || name.contains("norm") || name.contains("LayerNorm") || name.contains("ln_");

    private final List<String> bufferNames;
    private final Map<String, NDArray> buffers = new LinkedHashMap<>();
    private final Predicate<String> decayExcluded;
    private NDManager manager;
    private long steps;

    BaseOptimizer(List<String> bufferNames, Predicate<String> decayExcluded) {
        this.bufferNames = bufferNames;
        this.decayExcluded = decayExcluded;
    }

    /**
     * Per-step values shared by all parameters of one device and dtype (0-d arrays, created once per step).
     */
    interface StepScalars {}

    /**
     * Creates this step's scalars for parameters like {@code like}.
     *
     * @param like a parameter value
     * @param lr the learning rate
     * @param step the 1-based step number
     * @return the scalars
     */
    abstract StepScalars scalars(NDArray like, double lr, long step);

    /**
     * Updates one parameter in place.
     *
     * @param name the parameter name
     * @param p the value (updated in place)
     * @param grad its gradient
     * @param decay whether weight decay applies to it
     * @param s this step's scalars
     */
    abstract void updateOne(String name, NDArray p, NDArray grad, boolean decay, StepScalars s);

    /**
     * A libtorch-owned 0-d constant that lives in the step's scope (not over Java memory).
     *
     * @param like device and dtype
     * @param v the value
     * @return the constant
     */
    static NDArray full(NDArray like, double v) {
        return like.getManager().full(new Shape(), (float) v, like.getDataType());
    }

    @Override
    public final void update(Map<String, Param> params, double lr) {
        if (!(lr >= 0) || Double.isInfinite(lr)) {
            throw new IllegalArgumentException("learning rate must be finite and >= 0, got " + lr);
        }
        boolean gradMode = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        long step = steps + 1;
        try (NDScope scope = new NDScope()) {
            Map<String, StepScalars> perKind = new HashMap<>(2);
            for (Map.Entry<String, Param> e : params.entrySet()) {
                NDArray p = e.getValue().array();
                if (!e.getValue().isTrainable()) {
                    continue;
                }
                PtNDArray pt = (PtNDArray) p;
                NDArray grad = JniUtils.getGradient(pt);
                if (grad == null) {
                    continue;
                }
                StepScalars s = perKind.computeIfAbsent(p.getDevice() + "/" + p.getDataType(),
                        k -> scalars(p, lr, step));
                updateOne(e.getKey(), p, grad, !decayExcluded.test(e.getKey()), s);
            }
        } finally {
            JniUtils.setGradMode(gradMode);
        }
        steps = step;
    }

    /**
     * The named buffer of a parameter, created as zeros on first use, or null if {@code zeros} is false and
     * there is none yet.
     *
     * @param buffer the buffer name ({@code exp_avg} ...)
     * @param name the parameter name
     * @param p the parameter value
     * @param zeros whether to create it
     * @return the buffer
     */
    final NDArray buffer(String buffer, String name, NDArray p, boolean zeros) {
        String key = buffer + "." + name;
        NDArray b = buffers.get(key);
        if (b == null) {
            if (!zeros) {
                return null;
            }
            b = p.zerosLike();
            keep(key, b);
        } else if (!b.getShape().equals(p.getShape()) || b.getDataType() != p.getDataType()) {
            throw new PeftException("optimizer state '" + key + "' has shape " + b.getShape() + " " + b.getDataType()
                    + " but parameter '" + name + "' has " + p.getShape() + " " + p.getDataType());
        }
        return b;
    }

    /**
     * Stores a buffer that must outlive the step (taken out of every scope, owned by this optimizer).
     *
     * @param key {@code <buffer>.<param name>}
     * @param b the array
     */
    final void keep(String key, NDArray b) {
        NDScope.unregister(b);
        if (manager == null) {
            manager = NDManager.newBaseManager(b.getDevice());
        }
        b.attach(manager);
        NDArray old = buffers.put(key, b);
        if (old != null && old != b) {
            old.close();
        }
    }

    @Override
    public final Map<String, NDArray> state() {
        Map<String, NDArray> out = new LinkedHashMap<>(buffers);
        if (manager == null) {
            manager = NDManager.newBaseManager();
        }
        // libtorch-owned (not over Java memory); also registered in the caller's scope
        out.put("step", manager.zeros(new Shape(1), DataType.INT64).add(steps));
        return out;
    }

    @Override
    public final void loadState(Map<String, NDArray> state) {
        NDArray step = state.get("step");
        if (step == null || step.getShape().size() != 1) {
            throw new PeftException("optimizer state: expected a 1-element 'step' array, found "
                    + (step == null ? "none" : step.getShape().toString()));
        }
        for (String key : state.keySet()) {
            if (!key.equals("step") && bufferNames.stream().noneMatch(b -> key.startsWith(b + ".")
                    && key.length() > b.length() + 1)) {
                throw new PeftException("optimizer state: unknown key '" + key + "' (expected 'step' or "
                        + String.join(".<param>, ", bufferNames) + ".<param>)");
            }
        }
        long restored = step.toType(DataType.INT64, false).toLongArray()[0];
        for (NDArray b : buffers.values()) {
            b.close();
        }
        buffers.clear();
        for (Map.Entry<String, NDArray> e : state.entrySet()) {
            if (!e.getKey().equals("step")) {
                keep(e.getKey(), e.getValue().duplicate());
            }
        }
        steps = restored;
    }

    @Override
    public final long steps() {
        return steps;
    }

    @Override
    public void close() {
        buffers.clear();
        if (manager != null) {
            manager.close();
            manager = null;
        }
    }
}
