package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.nn.Param;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Global-norm clipping against torch.nn.utils.clip_grad_norm_, and the dynamic loss scaler's policy. */
class GradClipAndScalerTest {

    /** Two trainable parameters whose gradients are exactly {@code ga} and {@code gb} (loss = sum(p * g)). */
    private static List<Param> withGradients(NDManager m, float[] ga, float[] gb) {
        Param a = new Param(m.zeros(new Shape(2, 3)));
        Param b = new Param(m.zeros(new Shape(3)));
        a.setTrainable(true);
        b.setTrainable(true);
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            NDArray loss = a.array().mul(m.create(ga, new Shape(2, 3)).duplicate()).sum()
                    .add(b.array().mul(m.create(gb).duplicate()).sum());
            gc.backward(loss);
        }
        return List.of(a, b);
    }

    @Test
    void clipsLikeTorch() {
        try (NDManager m = NDManager.newBaseManager()) {
            List<Param> ps = withGradients(m, new float[] {1, -2, 3, 0.5f, 0, -1}, new float[] {2, 2, -4});
            // torch: clip_grad_norm_([a, b], 2.0) returns 6.264982223510742 and leaves these gradients
            double norm = GradClip.globalNorm(ps, 2.0);
            assertEquals(6.264982223510742, norm, 1e-6);
            assertArrayEquals(new float[] {0.319234699010849f, -0.638469398021698f, 0.9577040672302246f, 0.1596173495054245f,
                0.0f, -0.319234699010849f}, ps.get(0).array().getGradient().toFloatArray(), 1e-6f);
            assertArrayEquals(new float[] {0.638469398021698f, 0.638469398021698f, -1.276938796043396f},
                    ps.get(1).array().getGradient().toFloatArray(), 1e-6f);
            // below the threshold nothing changes
            double again = GradClip.globalNorm(ps, 10.0);
            assertEquals(2.0, again, 1e-5);
            assertEquals(-1.276938796043396f, ps.get(1).array().getGradient().toFloatArray()[2], 1e-6f);
        }
    }

    @Test
    void scalerGrowsBacksOffAndSkipsOnInjectedOverflow() {
        LossScaler s = new LossScaler(true, 65536, 2, 0.5, 3);
        assertEquals(65536, s.scale(), 0);
        assertTrue(s.update(false));
        assertTrue(s.update(false));
        assertEquals(65536, s.scale(), 0);
        assertTrue(s.update(false)); // third good step in a row: grow
        assertEquals(131072, s.scale(), 0);
        assertTrue(s.update(false));
        assertFalse(s.update(true)); // overflow: skip, back off, reset the counter
        assertEquals(65536, s.scale(), 0);
        assertEquals(0, s.goodSteps());
        assertFalse(s.update(true));
        assertEquals(32768, s.scale(), 0);
        assertEquals(2, s.skippedSteps());
        for (int i = 0; i < 3; i++) {
            assertTrue(s.update(false));
        }
        assertEquals(65536, s.scale(), 0);
        // torch's defaults: 2^16, x2 after 2000 good steps
        LossScaler d = new LossScaler(true);
        for (int i = 0; i < 1999; i++) {
            d.update(false);
        }
        assertEquals(65536, d.scale(), 0);
        d.update(false);
        assertEquals(131072, d.scale(), 0);
        LossScaler off = new LossScaler(false);
        assertEquals(1, off.scale(), 0);
        assertTrue(off.update(true));
        assertEquals(1, off.scale(), 0);
    }

    @Test
    void unscaleDividesGradientsAndDetectsInfAndNaN() {
        try (NDManager m = NDManager.newBaseManager()) {
            LossScaler s = new LossScaler(true, 4, 2, 0.5, 10);
            List<Param> ps = withGradients(m, new float[] {4, 8, -4, 0, 2, 1}, new float[] {4, 4, 4});
            assertFalse(s.unscaleAndCheck(ps));
            assertArrayEquals(new float[] {1, 2, -1, 0, 0.5f, 0.25f}, ps.get(0).array().getGradient().toFloatArray(), 0f);
            List<Param> inf = withGradients(m, new float[] {1, Float.POSITIVE_INFINITY, 0, 0, 0, 0}, new float[] {1, 1, 1});
            assertTrue(s.unscaleAndCheck(inf));
            List<Param> nan = withGradients(m, new float[] {1, 1, 0, 0, 0, 0}, new float[] {Float.NaN, 1, 1});
            assertTrue(s.unscaleAndCheck(nan));
            assertFalse(new LossScaler(false).unscaleAndCheck(nan)); // disabled: fp32 never checks
        }
    }
}
