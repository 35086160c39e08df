package io.github.peft4j.adapters;

import io.github.peft4j.peft.AdapterState;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.nn.Conv1D;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Finite-difference checks of the IA3 layer's gradient and of its merged form, on a linear and a Conv1D. */
class IA3GradientTest {
    private static final double EPS = 1e-3;
    private static final double REL_TOL = 1e-2;

    private static Projection projection(NDManager m, boolean conv, int in, int out) {
        NDArray w = m.randomNormal(conv ? new Shape(in, out) : new Shape(out, in));
        NDArray b = m.randomNormal(new Shape(out));
        return conv ? new Conv1D(w, b) : new Linear(w, b);
    }

    /** loss = sum(layer(x) ⊙ r) */
    private static double loss(IA3Layer layer, NDArray x, NDArray r) {
        return layer.forward(x).mul(r).sum().getFloat();
    }

    @ParameterizedTest(name = "conv1d={0} feedforward={1}")
    @CsvSource({"false,false", "false,true", "true,false", "true,true"})
    void gradientMatchesFiniteDifferences(boolean conv, boolean feedforward) {
        int in = 5;
        int out = 4;
        try (NDManager m = NDManager.newBaseManager()) {
            m.getEngine().setRandomSeed(7);
            IA3Layer layer = new IA3Layer(projection(m, conv, in, out), AdapterState.of("a"));
            layer.addAdapter("a", feedforward, false, "test");
            Param l = layer.vector("a");
            assertEquals(feedforward ? new Shape(1, in) : new Shape(out, 1), l.shape());
            l.setTrainable(true);
            NDArray x = m.randomNormal(new Shape(3, in));
            NDArray r = m.randomNormal(new Shape(3, out));
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(layer.forward(x).mul(r).sum());
            }
            float[] analytic = l.array().getGradient().toFloatArray();
            float[] values = l.array().toFloatArray();
            l.setTrainable(false);
            double worst = 0;
            for (int i = 0; i < values.length; i++) {
                double plus = lossAt(layer, l, values, i, EPS, x, r);
                double minus = lossAt(layer, l, values, i, -EPS, x, r);
                double numeric = (plus - minus) / (2 * EPS);
                double rel = Math.abs(numeric - analytic[i]) / Math.max(1e-3, Math.abs(numeric) + Math.abs(analytic[i]));
                worst = Math.max(worst, rel);
            }
            System.out.printf("ia3 grad conv1d=%s feedforward=%s max rel err = %.3g%n", conv, feedforward, worst);
            assertTrue(worst < REL_TOL, "max relative error " + worst);
        }
    }

    private static double lossAt(IA3Layer layer, Param l, float[] values, int i, double delta, NDArray x, NDArray r) {
        float[] v = values.clone();
        v[i] += (float) delta;
        NDArray tmp = l.array().getManager().create(v, l.shape());
        l.set(tmp.duplicate()); // create() aliases Java memory
        tmp.close();
        return loss(layer, x, r);
    }

    @ParameterizedTest(name = "conv1d={0} feedforward={1}")
    @CsvSource({"false,false", "false,true", "true,false", "true,true"})
    void mergedForwardEqualsAdapterForward(boolean conv, boolean feedforward) {
        try (NDManager m = NDManager.newBaseManager()) {
            IA3Layer layer = new IA3Layer(projection(m, conv, 6, 3), AdapterState.of("a", "b"));
            layer.addAdapter("a", feedforward, false, "test");
            layer.addAdapter("b", feedforward, false, "test");
            NDArray x = m.randomNormal(0, 1, new Shape(2, 6), DataType.FLOAT32);
            NDArray expected = layer.forward(x);
            // two active adapters multiply their vectors
            NDArray la = layer.vector("a").array().reshape(-1);
            NDArray lb = layer.vector("b").array().reshape(-1);
            NDArray manual = feedforward ? layer.base().forward(x.mul(la).mul(lb)) : layer.base().forward(x).mul(la).mul(lb);
            assertTrue(Tiny.diff(expected, manual) < 1e-5);
            layer.merge("a");
            assertTrue(Tiny.diff(layer.forward(x), expected) < 1e-5, "merged adapter applied twice or not at all");
            layer.merge("b");
            assertTrue(Tiny.diff(layer.forward(x), expected) < 1e-5);
            layer.unmerge("b");
            layer.unmerge("a");
            assertTrue(Tiny.diff(layer.forward(x), expected) < 1e-5);
        }
    }
}
