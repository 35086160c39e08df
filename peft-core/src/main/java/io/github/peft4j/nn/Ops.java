package io.github.peft4j.nn;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Tensor operations DJL lacks, written so that no Java number ever reaches an op on a gradient path: DJL
 * wraps such numbers in tensors over Java buffers that are freed before backward reads them. Every constant
 * here is a libtorch-owned 0-d array, cached per (device, dtype, value) and never closed. Where peft4j's fused
 * library is loaded ({@link FusedOps#enabled()}), the activations run as single ATen ops.
 */
public final class Ops {
    private static final Map<String, NDManager> MANAGERS = new ConcurrentHashMap<>();
    private static final Map<String, NDArray> SCALARS = new ConcurrentHashMap<>();
    private static final double SQRT_2_OVER_PI = Math.sqrt(2.0 / Math.PI);

    private Ops() {}

    /**
     * A cached libtorch-owned 0-d constant on the device and with the dtype of {@code like}.
     *
     * @param like an array whose device and dtype the constant takes
     * @param value the value
     * @return the constant (do not close it)
     */
    public static NDArray scalar(NDArray like, double value) {
        return scalar(like.getDevice(), like.getDataType(), value);
    }

    /**
     * A cached libtorch-owned 0-d constant.
     *
     * @param device the device
     * @param dtype the dtype
     * @param value the value
     * @return the constant (do not close it)
     */
    public static NDArray scalar(Device device, DataType dtype, double value) {
        String key = device + "/" + dtype + "/" + Double.doubleToLongBits(value);
        NDArray s = SCALARS.get(key);
        if (s == null) {
            synchronized (SCALARS) {
                s = SCALARS.get(key);
                if (s == null) {
                    NDManager m = MANAGERS.computeIfAbsent(device.toString(), d -> NDManager.newBaseManager(device));
                    s = m.full(new Shape(), (float) value, dtype);
                    NDScope.unregister(s);
                    SCALARS.put(key, s);
                }
            }
        }
        return s;
    }

    /**
     * A cast that autograd sees: the gradient flows back to {@code a} in {@code a}'s dtype. DJL's {@code toType} runs
     * under a no-grad guard and cuts the graph, so every cast on a gradient path (an fp32 trainable leaf used in an
     * fp16 forward, fp16 logits into an fp32 loss, RMSNorm's fp32 island) goes through here. Stock DJL has no such
     * cast; {@code cumprod} over a new axis of length 1 with an output dtype is one (its backward casts the
     * gradient back). Identity, the same object, when the dtype already matches.
     *
     * @param a the array
     * @param dtype the target dtype
     * @return {@code a} in {@code dtype}, on {@code a}'s gradient path
     */
    public static NDArray cast(NDArray a, DataType dtype) {
        if (a.getDataType() == dtype) {
            return a;
        }
        return a.expandDims(-1).cumProd(-1, dtype).squeeze(-1);
    }

    /**
     * GPT-2's {@code gelu_new}: {@code 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))}.
     *
     * @param x the input
     * @return the activation
     */
    public static NDArray geluTanh(NDArray x) {
        if (FusedOps.enabled()) {
            return FusedOps.geluTanh(x);
        }
        NDArray inner = x.add(x.pow(scalar(x, 3)).mul(scalar(x, 0.044715))).mul(scalar(x, SQRT_2_OVER_PI));
        return x.mul(scalar(x, 0.5)).mul(inner.tanh().add(scalar(x, 1)));
    }

    /**
     * The exact (erf) GELU used by BERT's {@code gelu}.
     *
     * @param x the input
     * @return the activation
     */
    public static NDArray gelu(NDArray x) {
        return Activation.gelu(x);
    }

    /**
     * SiLU: {@code x * sigmoid(x)}.
     *
     * @param x the input
     * @return the activation
     */
    public static NDArray silu(NDArray x) {
        if (FusedOps.enabled()) {
            return FusedOps.silu(x);
        }
        return x.mul(Activation.sigmoid(x));
    }

    /**
     * Applies a Hugging Face activation by its config name.
     *
     * @param name {@code gelu}, {@code gelu_new}, {@code gelu_pytorch_tanh}, {@code silu}, {@code swish}, {@code relu}
     * @param x the input
     * @return the activation
     */
    public static NDArray activation(String name, NDArray x) {
        switch (name) {
            case "gelu":
                return gelu(x);
            case "gelu_new":
            case "gelu_pytorch_tanh":
            case "gelu_fast":
                return geluTanh(x);
            case "silu":
            case "swish":
                return silu(x);
            case "relu":
                return Activation.relu(x);
            default:
                throw new IllegalArgumentException("unsupported activation '" + name + "'");
        }
    }

    /**
     * {@code x W^T + b}: libtorch's {@code linear}, as one fused call when {@link FusedOps#enabled()}.
     *
     * @param x {@code [..., in]}
     * @param weight {@code (out, in)}
     * @param bias {@code (out)} or null
     * @return {@code [..., out]}
     */
    public static NDArray linear(NDArray x, NDArray weight, NDArray bias) {
        if (FusedOps.enabled()) {
            return FusedOps.linear(x, weight, bias, false);
        }
        return ai.djl.nn.core.Linear.linear(x, weight, bias).head();
    }

    /**
     * A gated activation {@code act(gate) * up} (Llama's SwiGLU MLP); SiLU's runs as one fused call when
     * {@link FusedOps#enabled()}.
     *
     * @param name the activation's config name (see {@link #activation})
     * @param gate the gate projection's output
     * @param up the up projection's output, same shape
     * @return the product
     */
    public static NDArray gated(String name, NDArray gate, NDArray up) {
        boolean silu = "silu".equals(name) || "swish".equals(name);
        if (FusedOps.enabled() && silu) {
            return FusedOps.siluMul(gate, up);
        }
        RecomputeTape tape = silu ? RecomputeTape.active() : null;
        if (tape != null) {
            return recordedSiluMul(tape, gate, up);
        }
        return activation(name, gate).mul(up);
    }

    /**
     * {@code silu(gate) * up} through a {@link RecomputeTape}: computed without recording, its gradients recomputed in
     * backward from the two inputs alone ({@code d/dgate = dy · up · σ(g)(1 + g(1 − σ(g)))}, {@code d/dup = dy ·
     * silu(g)}), so autograd keeps neither {@code σ(gate)} nor {@code silu(gate)}, as ATen's fused SiLU backward.
     */
    private static NDArray recordedSiluMul(RecomputeTape tape, NDArray gate, NDArray up) {
        NDArray g = tape.retained(gate);
        NDArray u = tape.retained(up);
        NDArray y0;
        ai.djl.pytorch.jni.JniUtils.setGradMode(false);
        try {
            try (NDArray sig = Activation.sigmoid(gate); NDArray act = gate.mul(sig)) {
                y0 = act.mul(up);
            }
        } finally {
            ai.djl.pytorch.jni.JniUtils.setGradMode(true);
        }
        NDArray y = tape.output(gate, y0, dy -> {
            NDArray s = Activation.sigmoid(g);
            NDArray one = scalar(s, 1);
            NDArray ds = s.mul(g.mul(one.sub(s)).add(one)); // σ(g)(1 + g(1 − σ(g)))
            return dy.mul(u).mul(ds);
        });
        return tape.output(up, y, dy -> dy.mul(g.mul(Activation.sigmoid(g))));
    }

    /**
     * Checks that an activation name is supported.
     *
     * @param name the config value
     * @return whether {@link #activation} accepts it
     */
    public static boolean isSupportedActivation(String name) {
        return switch (name) {
            case "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "silu", "swish", "relu" -> true;
            default -> false;
        };
    }

    /**
     * A libtorch-owned copy of Java data: an array created from Java memory must not be read after that memory
     * is freed, so callers that keep or pass on the array use this copy.
     *
     * @param manager where to create it
     * @param data the values
     * @param shape the shape
     * @return a new int64 array
     */
    public static NDArray owned(ai.djl.ndarray.NDManager manager, long[] data, ai.djl.ndarray.types.Shape shape) {
        try (NDArray view = manager.create(data, shape)) {
            return view.duplicate();
        }
    }

    /**
     * A libtorch-owned copy of Java data (see {@link #owned(ai.djl.ndarray.NDManager, long[], ai.djl.ndarray.types.Shape)}).
     *
     * @param manager where to create it
     * @param data the values
     * @param shape the shape
     * @return a new fp32 array
     */
    public static NDArray owned(ai.djl.ndarray.NDManager manager, float[] data, ai.djl.ndarray.types.Shape shape) {
        try (NDArray view = manager.create(data, shape)) {
            return view.duplicate();
        }
    }

    /**
     * An independent copy of an array for a long-lived owner: outside the autograd graph, converted to a dtype,
     * on the target manager's device, attached to that manager and taken out of any open {@link NDScope} (so a
     * step's scope does not free it). The one way peft4j makes owned copies: adapter weights loaded from files,
     * snapshots of base values, modules_to_save copies.
     *
     * @param a the source (left untouched)
     * @param target the manager that owns the copy
     * @param dtype the copy's dtype
     * @return the copy
     */
    public static NDArray ownedCopy(NDArray a, NDManager target, DataType dtype) {
        NDArray copy;
        try (NDScope scope = new NDScope()) {
            NDArray detached = a.stopGradient();
            NDArray typed = detached.getDataType() == dtype ? detached.duplicate() : detached.toType(dtype, true);
            copy = typed.getDevice().equals(target.getDevice()) ? typed : typed.toDevice(target.getDevice(), true);
            scope.suppressNotUsedWarning();
            NDScope.unregister(copy);
        }
        copy.attach(target);
        return copy;
    }
}
