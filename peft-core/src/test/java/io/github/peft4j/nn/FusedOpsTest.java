package io.github.peft4j.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Losses;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

/**
 * Parity of peft4j's fused ops (ATen through {@code libpeft4j_fused.so}) with the composite ops they replace:
 * values and gradients, op by op and through whole tiny models. The composite side is always computed (and is
 * what every other test runs on a stock build); the fused side needs the library, which only
 * {@code scripts/with-torch.sh} builds and loads, so those tests state in their names that they run only when
 * it is loaded (an assumption, not a parity skip: there is no fixture to miss). Tolerances: 2e-6 absolute for
 * single element-wise ops, 1e-5 for attention, RMSNorm and the loss (other reduction orders), 2e-5 for
 * whole-model logits, 5e-5 for whole-model gradients, 4e-6 for parameters after 5 AdamW steps (fp32). Outputs of padding queries (rows with no key to
 * attend to) are left out of the comparison: both paths give them the same values, but their gradients differ
 * (ATen's SDPA and the composite softmax handle a fully masked row differently). With left padding and the
 * causal-LM shift, the last padding position predicts the first real token, so gradients through that position
 * differ between the paths; the model test pads on the right, where no query row is fully masked.
 */
class FusedOpsTest {
    private final boolean initial = FusedOps.enabled();

    @AfterEach
    void restore() {
        if (FusedOps.available()) {
            FusedOps.setEnabled(initial);
        }
    }

    private static void requireLibrary() {
        assumeTrue(FusedOps.available(), "fused library not loaded (" + FusedOps.status()
                + "): the fused side runs through scripts/with-torch.sh only");
    }

    /** Values and gradients (w.r.t. every input, through a random weighting of the output) of f. */
    private static List<float[]> valueAndGrads(boolean fused, Function<NDArray[], NDArray> f, NDArray... inputs) {
        if (FusedOps.available()) {
            FusedOps.setEnabled(fused);
        }
        try (NDScope scope = new NDScope()) {
            NDArray[] xs = new NDArray[inputs.length];
            for (int i = 0; i < xs.length; i++) {
                xs[i] = inputs[i].duplicate();
                xs[i].setRequiresGradient(true);
            }
            List<float[]> out = new ArrayList<>();
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray y = f.apply(xs);
                out.add(y.toFloatArray());
                NDManager m = y.getManager();
                Engine.getInstance().setRandomSeed(11);
                NDArray w = m.randomNormal(y.getShape()).duplicate(); // libtorch-owned
                gc.backward(y.mul(w).sum());
            }
            for (NDArray x : xs) {
                out.add(x.getGradient().toFloatArray());
            }
            return out;
        }
    }

    private static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length, "lengths");
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    /** Compares fused and composite; prints and returns the worst |diff|. */
    private static double compare(String what, double tol, Function<NDArray[], NDArray> f, NDArray... inputs) {
        List<float[]> c = valueAndGrads(false, f, inputs);
        List<float[]> u = valueAndGrads(true, f, inputs);
        double worst = 0;
        for (int i = 0; i < c.size(); i++) {
            double d = maxDiff(c.get(i), u.get(i));
            assertTrue(d <= tol, what + (i == 0 ? " value" : " grad of input " + (i - 1)) + ": max|diff| " + d + " > " + tol);
            worst = Math.max(worst, d);
        }
        // the gradients are not trivially zero (the comparison would then prove nothing)
        for (int i = 1; i < c.size(); i++) {
            double norm = 0;
            for (float v : c.get(i)) {
                norm = Math.max(norm, Math.abs(v));
            }
            assertTrue(norm > 1e-3, what + ": grad of input " + (i - 1) + " is ~0");
        }
        System.out.printf("fused vs composite %-28s max|diff| %.3g (values and gradients)%n", what, worst);
        return worst;
    }

    private static NDArray rnd(NDManager m, long... shape) {
        return m.randomNormal(new Shape(shape)).duplicate();
    }

    @Test
    @DisplayName("composite path: used whenever the library is not loaded or switched off, and refuses fused calls")
    void compositeWhenAbsent() {
        if (!FusedOps.available()) {
            assertFalse(FusedOps.enabled());
            assertThrows(IllegalStateException.class, () -> FusedOps.setEnabled(true));
            try (NDManager m = NDManager.newBaseManager()) {
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> FusedOps.silu(m.ones(new Shape(2))));
                assertTrue(e.getMessage().contains("unavailable"), e.getMessage());
            }
        } else {
            assertTrue(FusedOps.status().startsWith("loaded "), FusedOps.status());
            FusedOps.setEnabled(false);
            assertFalse(FusedOps.enabled());
            assertTrue(FusedOps.status().endsWith("[switched off]"), FusedOps.status());
        }
        // the composite activations are right by definition, whichever path is configured
        boolean was = FusedOps.available() && FusedOps.setEnabled(false);
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray x = m.create(new float[] {-2f, 0f, 1.5f});
            float[] silu = Ops.silu(x).toFloatArray();
            assertEquals(-2.0 / (1 + Math.exp(2)), silu[0], 1e-6);
            assertEquals(0.0, silu[1], 1e-7);
            assertEquals(1.5 / (1 + Math.exp(-1.5)), silu[2], 1e-6);
            float[] g = Ops.geluTanh(x).toFloatArray();
            double t = 0.5 * 1.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (1.5 + 0.044715 * Math.pow(1.5, 3))));
            assertEquals(t, g[2], 1e-6);
        } finally {
            if (FusedOps.available()) {
                FusedOps.setEnabled(was);
            }
        }
    }

    @Test
    @DisplayName("fused activations == composite (runs only with the fused library loaded)")
    void activationsWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(1);
            NDArray x = rnd(m, 4, 8, 16).mul(3);
            NDArray y = rnd(m, 4, 8, 16);
            compare("silu", 2e-6, a -> Ops.silu(a[0]), x);
            compare("geluTanh", 2e-6, a -> Ops.geluTanh(a[0]), x);
            compare("gated silu (SwiGLU)", 2e-6, a -> Ops.gated("silu", a[0], a[1]), x, y);
        }
    }

    @Test
    @DisplayName("fused linear / Conv1D (addmm) == composite, with and without bias (runs only with the fused library loaded)")
    void linearWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(5);
            NDArray x = rnd(m, 3, 5, 16);
            NDArray w = rnd(m, 24, 16);
            NDArray wt = rnd(m, 16, 24);
            NDArray b = rnd(m, 24);
            compare("linear + bias", 1e-5, a -> new Linear(a[1], a[2]).forward(a[0]), x, w, b);
            compare("linear", 1e-5, a -> new Linear(a[1], null).forward(a[0]), x, w);
            compare("Conv1D (in, out) + bias", 1e-5, a -> new Conv1D(a[1], a[2]).forward(a[0]), x, wt, b);
            compare("Ops.linear", 1e-5, a -> Ops.linear(a[0], a[1], null), x, w);
        }
    }

    @Test
    @DisplayName("fused RMSNorm and RoPE == composite (runs only with the fused library loaded)")
    void normAndRopeWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(2);
            NDArray x = rnd(m, 2, 5, 32).mul(2);
            NDArray w = rnd(m, 32);
            compare("rmsNorm", 1e-5, a -> new RMSNorm(a[1], 1e-6).forward(a[0]), x, w);
            NDArray q = rnd(m, 2, 4, 5, 16);
            NDArray ang = rnd(m, 1, 1, 5, 16);
            NDArray cos = ang.cos();
            NDArray sin = ang.sin();
            compare("rope", 2e-6, a -> {
                if (FusedOps.enabled()) {
                    return FusedOps.rope(a[0], cos, sin);
                }
                long half = 8;
                NDArray x1 = a[0].get("..., :8");
                NDArray x2 = a[0].get("..., 8:");
                return a[0].mul(cos).add(x2.neg().concat(x1, -1).mul(sin));
            }, q);
        }
    }

    @Test
    @DisplayName("fused attention (SDPA) == composite, causal + padding mask, grouped-query (runs only with the fused library loaded)")
    void attentionWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(3);
            NDArray q = rnd(m, 2, 4, 6, 8);
            NDArray k = rnd(m, 2, 2, 6, 8);
            NDArray v = rnd(m, 2, 2, 6, 8);
            NDArray keyMask = m.create(new long[] {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1}, new Shape(2, 6));
            NDArray mask = Attention.causalMask(m, 2, 6, 0, keyMask, DataType.FLOAT32);
            NDArray scale = Ops.scalar(q, 1 / Math.sqrt(8));
            // Query rows with no key to attend to (padding queries of a left-padded row) give the same (uniform)
            // output on both paths but different gradients (neither meaningful: the loss ignores those positions,
            // as the causal-LM collators give them -100), so their outputs are zeroed here before the backward.
            NDArray validQuery = m.create(new float[] {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1}, new Shape(2, 6, 1));
            compare("attention (GQA, masked)", 1e-5,
                    a -> Attention.attend(a[0], a[1], a[2], mask, scale, null).mul(validQuery), q, k, v);
            NDArray k4 = rnd(m, 2, 4, 6, 8);
            NDArray v4 = rnd(m, 2, 4, 6, 8);
            compare("attention (no mask)", 1e-5, a -> Attention.attend(a[0], a[1], a[2], null, scale, null), q, k4, v4);
        }
    }

    @Test
    @DisplayName("fused causal mask == composite, bit for bit: padding, cache, fp32/fp16/bf16 (runs only with the fused library loaded)")
    void causalMaskWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray keyMask = m.create(new long[] {0, 1, 1, 1, 1, 1, 1, 1, 1, 0}, new Shape(2, 5));
            for (DataType dt : new DataType[] {DataType.FLOAT32, DataType.FLOAT16, DataType.BFLOAT16}) {
                for (int past : new int[] {0, 2}) {
                    NDArray km = past == 0 ? keyMask.get(":, 2:") : keyMask;
                    for (NDArray k : new NDArray[] {null, km}) {
                        FusedOps.setEnabled(false);
                        NDArray c = Attention.causalMask(m, 2, 3, past, k, dt);
                        FusedOps.setEnabled(true);
                        NDArray u = Attention.causalMask(m, 2, 3, past, k, dt);
                        assertEquals(c.getShape(), u.getShape(), dt + " past " + past);
                        assertEquals(dt, u.getDataType());
                        assertArrayEquals(c.toType(DataType.FLOAT32, false).toFloatArray(),
                                u.toType(DataType.FLOAT32, false).toFloatArray(), 0f, dt + " past " + past + " mask " + (k != null));
                    }
                }
            }
            System.out.println("fused vs composite causal masks (fp32, fp16, bf16; past 0/2; with/without padding): identical");
        }
    }

    @Test
    @DisplayName("fused cross-entropy == composite, -100 ignored, all-ignored gives 0, bad label named (runs only with the fused library loaded)")
    void crossEntropyWhenLoaded() {
        requireLibrary();
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(4);
            NDArray logits = rnd(m, 3, 5, 11).mul(2);
            NDArray labels = m.create(new long[] {1, 2, -100, 4, 5, 10, 0, -100, -100, 3, 7, 7, 7, 1, 2}, new Shape(3, 5));
            compare("causal-LM cross-entropy", 1e-5, a -> Losses.causalLm(a[0], labels), logits);
            compare("token cross-entropy", 1e-5, a -> Losses.tokenClassification(a[0], labels), logits);
            NDArray none = m.full(new Shape(3, 5), -100L);
            FusedOps.setEnabled(true);
            List<float[]> r = valueAndGrads(true, a -> Losses.tokenClassification(a[0], none), logits);
            assertEquals(0f, r.get(0)[0], 0f, "all ignored: loss 0 (torch would give NaN)");
            for (float g : r.get(1)) {
                assertEquals(0f, g, 0f, "all ignored: zero gradient");
            }
            NDArray bad = m.create(new long[] {1, 2, 3, 11, 0}, new Shape(1, 5));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Losses.tokenClassification(logits.get("0:1"), bad));
            assertTrue(e.getMessage().contains("label out of range [0, 11)") && e.getMessage().contains("max 11"), e.getMessage());
        }
    }

    /** Parameters after 5 AdamW steps (weight decay on "w", excluded for "bias") on fixed gradients. */
    private static List<float[]> adamwRun(boolean fused) {
        FusedOps.setEnabled(fused);
        try (NDManager m = NDManager.newBaseManager()) {
            Engine.getInstance().setRandomSeed(9);
            Map<String, Param> params = new java.util.LinkedHashMap<>();
            params.put("w", new Param(rnd(m, 6, 5)));
            params.put("bias", new Param(rnd(m, 5)));
            params.values().forEach(p -> p.setTrainable(true));
            NDArray c1 = rnd(m, 6, 5);
            NDArray c2 = rnd(m, 5);
            try (io.github.peft4j.train.Optimizer opt = io.github.peft4j.train.AdamW.builder().weightDecay(0.1).build()) {
                for (int step = 0; step < 5; step++) {
                    try (NDScope scope = new NDScope(); GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        NDArray w = params.get("w").array();
                        NDArray b = params.get("bias").array();
                        gc.backward(w.mul(c1).mul(w).sum().add(b.mul(c2).sum()));
                    }
                    opt.step(params, 1e-2 * (step + 1));
                }
            }
            List<float[]> out = new ArrayList<>();
            for (Param p : params.values()) {
                out.add(p.array().toFloatArray());
            }
            return out;
        }
    }

    @Test
    @DisplayName("fused AdamW (_fused_adamw_) == DJL's adamUpdate over 5 steps, decay and exclusion (runs only with the fused library loaded)")
    void adamwWhenLoaded() {
        requireLibrary();
        List<float[]> c = adamwRun(false);
        List<float[]> u = adamwRun(true);
        double worst = 0;
        for (int i = 0; i < c.size(); i++) {
            worst = Math.max(worst, maxDiff(c.get(i), u.get(i)));
        }
        System.out.printf("fused vs composite %-28s max|diff| %.3g (parameters after 5 steps)%n", "AdamW", worst);
        assertTrue(worst <= 4e-6, "AdamW max|diff| " + worst); // float rounding of the folded bias corrections
    }

    /** Logits and the gradient of every parameter for a causal-LM loss. */
    private static List<float[]> modelRun(Supplier<TransformerModel> make, boolean fused) {
        if (FusedOps.available()) {
            FusedOps.setEnabled(fused);
        }
        List<float[]> out = new ArrayList<>();
        try (TransformerModel model = make.get(); NDScope scope = new NDScope()) {
            Map<String, Param> params = model.parameters();
            params.values().forEach(p -> p.setTrainable(true));
            NDManager m = NDManager.newBaseManager();
            NDArray ids = TinyModels.ids(m, 2, 7, 5);
            // right padding: every query has a key to attend to (left padding's padding queries: see the class doc)
            long[] keep = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
            NDArray mask = m.create(keep, new Shape(2, 7));
            long[] lab = ids.toLongArray();
            for (int i = 0; i < lab.length; i++) {
                lab[i] = keep[i] == 1 ? lab[i] : -100; // padding positions are ignored by the loss, as collators do
            }
            NDArray labels = m.create(lab, new Shape(2, 7));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray logits = model.forward(ModelInput.of(ids, mask)).logits();
                out.add(logits.mul(mask.toType(DataType.FLOAT32, false).expandDims(-1)).toFloatArray());
                gc.backward(Losses.causalLm(logits, labels));
            }
            for (Param p : params.values()) {
                out.add(p.array().getGradient().toFloatArray());
            }
            m.close();
        }
        return out;
    }

    private static void compareModel(String name, Supplier<TransformerModel> make) {
        List<float[]> c = modelRun(make, false);
        List<float[]> u = modelRun(make, true);
        assertEquals(c.size(), u.size());
        double logit = maxDiff(c.get(0), u.get(0));
        double grad = 0;
        for (int i = 1; i < c.size(); i++) {
            grad = Math.max(grad, maxDiff(c.get(i), u.get(i)));
        }
        System.out.printf("fused vs composite %-12s logits max|diff| %.3g, parameter gradients max|diff| %.3g (%d tensors)%n",
                name, logit, grad, c.size() - 1);
        assertTrue(logit <= 2e-5, name + " logits max|diff| " + logit);
        assertTrue(grad <= 5e-5, name + " gradients max|diff| " + grad);
        assertArrayEquals(new int[] {c.get(0).length}, new int[] {u.get(0).length});
    }

    @Test
    @DisplayName("whole tiny Llama and GPT-2: fused == composite logits and gradients (runs only with the fused library loaded)")
    void modelsWhenLoaded() {
        requireLibrary();
        compareModel("llama-tiny", TinyModels::llama);
        compareModel("gpt2-tiny", TinyModels::gpt2);
    }
}
