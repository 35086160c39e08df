package io.github.peft4j.nn;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.util.Utils;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * ATen's fused operators that DJL 0.36 does not expose ({@code scaled_dot_product_attention}, {@code silu},
 * {@code rms_norm}, tanh-GELU, {@code cross_entropy_loss}, {@code linear}/{@code addmm}, RoPE in one call), through peft4j's own small native
 * library ({@code libpeft4j_fused.so}, source in {@code peft-core/src/main/native/}) that works on DJL's tensor
 * handles and keeps autograd intact. {@code scripts/with-torch.sh} compiles it against the same libtorch DJL
 * runs on and sets {@code PEFT4J_FUSED_LIB}.
 *
 * <p>The library is found through the system property {@code peft4j.fused.lib} or the environment variable
 * {@code PEFT4J_FUSED_LIB} (the path of the {@code .so}). It is used only when it loads and was built for the
 * libtorch version DJL loaded; otherwise {@link #available()} is false, {@link #status()} says why, and
 * {@link Ops}, {@link Attention}, {@link RMSNorm} and the losses use their composite ops (the stock path, e.g.
 * a plain {@code mvn verify} on DJL's libtorch 2.7.1). {@code -Dpeft4j.fused=false} or
 * {@code PEFT4J_NO_FUSED=1} turns it off, and {@link #setEnabled(boolean)} switches it at run time (parity
 * tests and benchmarks compare both paths in one process).
 */
public final class FusedOps {
    /** The system property naming the library. */
    public static final String LIBRARY_PROPERTY = "peft4j.fused.lib";
    /** The environment variable naming the library. */
    public static final String LIBRARY_ENV = "PEFT4J_FUSED_LIB";

    private static final String STATUS;
    private static final String PATH;
    private static final boolean LOADED;
    private static volatile boolean enabled;

    static {
        String path = Utils.getEnvOrSystemProperty(LIBRARY_ENV);
        String p = System.getProperty(LIBRARY_PROPERTY);
        if (p != null && !p.isEmpty()) {
            path = p;
        }
        boolean off = "false".equalsIgnoreCase(System.getProperty("peft4j.fused"))
                || "1".equals(System.getenv("PEFT4J_NO_FUSED"));
        String status;
        boolean loaded = false;
        if (path == null || path.isEmpty()) {
            status = "not configured (" + LIBRARY_ENV + " / -D" + LIBRARY_PROPERTY + " unset; scripts/with-torch.sh builds and sets it)";
            path = null;
        } else if (off) {
            status = "turned off (-Dpeft4j.fused=false or PEFT4J_NO_FUSED=1)";
        } else if (!Files.isRegularFile(Path.of(path))) {
            status = "not found: " + path;
        } else {
            String engineVersion = Engine.getEngine("PyTorch").getVersion(); // loads libtorch before our library
            try {
                System.load(Path.of(path).toAbsolutePath().toString());
                String built = nativeTorchVersion();
                if (!built.equals(engineVersion)) {
                    status = "built for libtorch " + built + " but DJL runs libtorch " + engineVersion + ": " + path;
                } else {
                    status = "loaded " + path + " (libtorch " + built + ")";
                    loaded = true;
                }
            } catch (UnsatisfiedLinkError e) {
                status = "failed to load " + path + ": " + e.getMessage();
            }
        }
        STATUS = status;
        PATH = path;
        LOADED = loaded;
        enabled = loaded;
        if (!loaded && path != null && !off) {
            org.slf4j.LoggerFactory.getLogger(FusedOps.class).warn("peft4j fused ops: {}; using composite ops", status);
        }
    }

    private FusedOps() {}

    /** @return whether the library is loaded and turned on: callers then use the fused ops */
    public static boolean enabled() {
        return enabled;
    }

    /** @return whether the library is loaded (whatever {@link #setEnabled(boolean)} says) */
    public static boolean available() {
        return LOADED;
    }

    /** @return a one-line description: loaded from where, or why not */
    public static String status() {
        return STATUS + (LOADED && !enabled ? " [switched off]" : "");
    }

    /** @return the configured library path, or null */
    public static String libraryPath() {
        return PATH;
    }

    /**
     * Switches the fused ops on or off for the whole process (for comparisons; the default is on when loaded).
     *
     * @param on whether to use them
     * @return the previous setting
     * @throws IllegalStateException when turning on and the library is not loaded
     */
    public static synchronized boolean setEnabled(boolean on) {
        if (on && !LOADED) {
            throw new IllegalStateException("peft4j fused ops unavailable: " + STATUS);
        }
        boolean was = enabled;
        enabled = on;
        return was;
    }

    /**
     * Whether DJL's JNI holds BFLOAT16 arrays (the BF16-patched JNI that {@code scripts/with-torch.sh} builds
     * does; stock DJL 0.36 aborts the JVM on them). Probed safely through the fused library: a BF16 tensor made
     * natively reads back as {@link DataType#BFLOAT16} only under the patched JNI. False without the library.
     *
     * @param like an array whose manager (and device) the probe uses
     * @return whether BF16 arrays are usable
     */
    public static boolean bf16(NDArray like) {
        if (!LOADED) {
            return false;
        }
        try (NDArray probe = wrap(like, nBf16Probe(handle(like)))) {
            return probe.getDataType() == DataType.BFLOAT16;
        }
    }

    /**
     * Whether BFLOAT16 compute is available in this process ({@link #bf16(NDArray)} probed once on the CPU).
     *
     * @return whether BF16 arrays are usable
     */
    public static boolean bf16Supported() {
        return Bf16.SUPPORTED;
    }

    private static final class Bf16 {
        static final boolean SUPPORTED = probe();

        private static boolean probe() {
            if (!LOADED) {
                return false;
            }
            try (ai.djl.ndarray.NDManager m = ai.djl.ndarray.NDManager.newBaseManager(ai.djl.Device.cpu(), "PyTorch")) {
                return bf16(m.zeros(new ai.djl.ndarray.types.Shape()));
            }
        }
    }

    /**
     * {@code x * sigmoid(x)}, one kernel (ATen {@code silu}).
     *
     * @param x the input
     * @return the activation
     */
    public static NDArray silu(NDArray x) {
        return wrap(x, nSilu(handle(x)));
    }

    /**
     * SwiGLU's {@code silu(gate) * up} in one call.
     *
     * @param gate the gate projection's output
     * @param up the up projection's output, same shape
     * @return the product
     */
    public static NDArray siluMul(NDArray gate, NDArray up) {
        return wrap(gate, nSiluMul(handle(gate), handle(up)));
    }

    /**
     * A dense projection {@code x W^T + b} in one call (ATen {@code linear}, or {@code addmm} for a weight
     * stored {@code (in, out)}).
     *
     * @param x {@code [..., in]}
     * @param weight {@code (out, in)}, or {@code (in, out)} with {@code fanInFanOut}
     * @param bias {@code (out)} or null
     * @param fanInFanOut whether the weight is stored {@code (in, out)} (GPT-2's Conv1D)
     * @return {@code [..., out]}
     */
    public static NDArray linear(NDArray x, NDArray weight, NDArray bias, boolean fanInFanOut) {
        return wrap(x, nLinear(handle(x), handle(weight), bias == null ? 0L : handle(bias), fanInFanOut));
    }

    /**
     * GELU with the tanh approximation (GPT-2's {@code gelu_new}), ATen {@code gelu(approximate='tanh')}.
     *
     * @param x the input
     * @return the activation
     */
    public static NDArray geluTanh(NDArray x) {
        return wrap(x, nGeluTanh(handle(x)));
    }

    /**
     * Llama's RMSNorm over the last axis (ATen {@code rms_norm}; normalised in fp32 and cast back for other
     * dtypes, the cast differentiable).
     *
     * @param x the input {@code [..., D]}
     * @param weight {@code [D]}
     * @param eps the epsilon
     * @return {@code weight * x / sqrt(mean(x^2) + eps)}
     */
    public static NDArray rmsNorm(NDArray x, NDArray weight, double eps) {
        return wrap(x, nRmsNorm(handle(x), handle(weight), eps));
    }

    /**
     * Rotary position embedding {@code x cos + rotate_half(x) sin} in one call.
     *
     * @param x {@code [B, H, S, D]}
     * @param cos {@code [B|1, 1, S, D]}
     * @param sin {@code [B|1, 1, S, D]}
     * @return the rotated input
     */
    public static NDArray rope(NDArray x, NDArray cos, NDArray sin) {
        return wrap(x, nRope(handle(x), handle(cos), handle(sin)));
    }

    /**
     * ATen's {@code scaled_dot_product_attention} (no dropout), grouped-query when {@code k} has fewer heads.
     *
     * @param q {@code [B, H, Q, D]}
     * @param k {@code [B, Hkv, K, D]}
     * @param v {@code [B, Hkv, K, D]}
     * @param mask an additive mask broadcastable to {@code [B, H, Q, K]}, or null
     * @param scale the score scale
     * @param causal whether to apply a causal mask on top (ATen's {@code is_causal})
     * @return the context {@code [B, Q, H * D]}
     */
    public static NDArray attention(NDArray q, NDArray k, NDArray v, NDArray mask, double scale, boolean causal) {
        return wrap(q, nAttention(handle(q), handle(k), handle(v), mask == null ? 0L : handle(mask), scale, causal));
    }

    /**
     * Mean cross-entropy over the labels that are not -100, 0 (with a zero gradient) when all are; fp16/bf16
     * logits are computed in fp32 (ATen {@code cross_entropy_loss} with sum reduction, divided by the count).
     *
     * @param logits {@code [N, C]}
     * @param labels {@code [N]} int64
     * @return the 0-d loss
     */
    public static NDArray crossEntropy(NDArray logits, NDArray labels) {
        return wrap(logits, nCrossEntropy(handle(logits), handle(labels)));
    }

    /**
     * The additive causal mask with optional key padding, as {@link Attention#causalMask} defines it, in one call.
     *
     * @param manager where to create it (its device)
     * @param batch batch size
     * @param queryLen number of query positions
     * @param pastLen number of cached positions before the queries
     * @param keyMask {@code [B, past + queryLen]} 1 for real tokens, 0 for padding; or null
     * @param dtype FLOAT32, FLOAT16, BFLOAT16 or FLOAT64
     * @param min the value for masked positions
     * @return {@code [B or 1, 1, Q, K]}
     */
    public static NDArray causalMask(ai.djl.ndarray.NDManager manager, long batch, long queryLen, long pastLen,
            NDArray keyMask, DataType dtype, double min) {
        int code = switch (dtype) {
            case FLOAT32 -> 0;
            case FLOAT16 -> 1;
            case BFLOAT16 -> 2;
            case FLOAT64 -> 3;
            default -> throw new IllegalArgumentException("causal mask dtype must be floating point, got " + dtype);
        };
        ai.djl.Device d = manager.getDevice();
        int type = ai.djl.Device.Type.GPU.equals(d.getDeviceType()) ? 1 : 0;
        long h = nCausalMask(keyMask == null ? 0L : handle(keyMask), batch, queryLen, pastLen, type,
                Math.max(0, d.getDeviceId()), code, min);
        return new PtNDArray((PtNDManager) manager, h);
    }

    /**
     * Causal-LM loss in one call: labels shifted left by one with -100 appended, then {@link #crossEntropy}'s
     * mean over the non-ignored labels.
     *
     * @param logits {@code [B, T, V]}
     * @param labels {@code [B, T]} int64
     * @return the 0-d loss
     */
    public static NDArray causalLmLoss(NDArray logits, NDArray labels) {
        return wrap(logits, nCausalLmLoss(handle(logits), handle(labels)));
    }

    /**
     * One AdamW step on one parameter, in place (ATen {@code _fused_adamw_}, as {@code torch.optim.AdamW(fused=True)}):
     * decoupled weight decay, moments, bias-corrected update. Call with gradient recording off.
     *
     * @param p the parameter
     * @param grad its gradient
     * @param m the first moment (updated)
     * @param v the second moment (updated)
     * @param lr the learning rate
     * @param beta1 the first-moment decay
     * @param beta2 the second-moment decay
     * @param weightDecay the decoupled weight decay (0 for none)
     * @param eps the denominator term
     * @param step the 1-based step number
     */
    public static void adamw(NDArray p, NDArray grad, NDArray m, NDArray v, double lr, double beta1, double beta2,
            double weightDecay, double eps, long step) {
        nAdamW(handle(p), handle(grad), handle(m), handle(v), lr, beta1, beta2, weightDecay, eps, step);
    }

    private static long handle(NDArray a) {
        if (!LOADED) {
            throw new IllegalStateException("peft4j fused ops unavailable: " + STATUS);
        }
        return ((PtNDArray) a).getHandle();
    }

    private static NDArray wrap(NDArray like, long handle) {
        return new PtNDArray((PtNDManager) like.getManager(), handle);
    }

    private static native String nativeTorchVersion();

    private static native long nBf16Probe(long like);

    private static native long nSilu(long x);

    private static native long nSiluMul(long gate, long up);

    private static native long nGeluTanh(long x);

    private static native long nLinear(long x, long weight, long bias, boolean fanInFanOut);

    private static native long nRmsNorm(long x, long weight, double eps);

    private static native long nRope(long x, long cos, long sin);

    private static native long nAttention(long q, long k, long v, long mask, double scale, boolean causal);

    private static native long nCrossEntropy(long logits, long labels);

    private static native long nCausalMask(long keyMask, long batch, long queryLen, long pastLen, int deviceType,
            int deviceId, int dtype, double min);

    private static native long nCausalLmLoss(long logits, long labels);

    private static native void nAdamW(long p, long g, long m, long v, double lr, double beta1, double beta2, double wd,
            double eps, long step);
}
