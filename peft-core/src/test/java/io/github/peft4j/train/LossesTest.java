package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.util.function.BinaryOperator;
import org.junit.jupiter.api.Test;

/**
 * Losses against torch's F.cross_entropy(ignore_index=-100) on fixed logits (fixture from
 * make_train_fixtures.py), zero weight of ignored positions, and finite-difference gradients.
 */
class LossesTest {

    private record Case(NDArray logits, NDArray labels, double loss) {}

    private static Case load(NDManager m, String key) throws IOException {
        JsonNode c = OptimizerTest.fixture("losses.json").get(key);
        JsonNode l = c.get("logits");
        float[] logits = new float[l.size()];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) l.get(i).asDouble();
        }
        long[] shape = new long[c.get("shape").size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = c.get("shape").get(i).asLong();
        }
        JsonNode lab = c.get("labels");
        int rows = lab.get(0).isArray() ? lab.size() : 1;
        int cols = lab.get(0).isArray() ? lab.get(0).size() : lab.size();
        long[] labels = new long[rows * cols];
        for (int i = 0; i < labels.length; i++) {
            labels[i] = lab.get(0).isArray() ? lab.get(i / cols).get(i % cols).asLong() : lab.get(i).asLong();
        }
        Shape ls = lab.get(0).isArray() ? new Shape(rows, cols) : new Shape(cols);
        return new Case(m.create(logits, new Shape(shape)).duplicate(), m.create(labels, ls).duplicate(),
                c.get("loss").asDouble());
    }

    /** Loss value and gradient w.r.t. the logits. */
    private static float[][] lossAndGrad(BinaryOperator<NDArray> f, NDArray logits, NDArray labels) {
        try (NDScope scope = new NDScope()) {
            NDArray x = logits.duplicate();
            x.setRequiresGradient(true);
            float loss;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray l = f.apply(x, labels);
                assertEquals(0, l.getShape().dimension(), "0-d loss");
                loss = l.getFloat();
                gc.backward(l);
            }
            return new float[][] {{loss}, x.getGradient().toFloatArray()};
        }
    }

    @Test
    void valuesMatchTorchCrossEntropy() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            Case c = load(m, "causal");
            assertEquals(c.loss, Losses.causalLm(c.logits, c.labels).getFloat(), 1e-5);
            c = load(m, "classification");
            assertEquals(c.loss, Losses.classification(c.logits, c.labels).getFloat(), 1e-5);
            c = load(m, "token");
            assertEquals(c.loss, Losses.tokenClassification(c.logits, c.labels).getFloat(), 1e-5);
        }
    }

    @Test
    void ignoredPositionsHaveZeroWeight() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            // causal: position t is ignored when labels[t+1] == -100, and the last position always is
            Case c = load(m, "causal");
            long[] labels = c.labels.toLongArray(); // [2, 5]
            float[] changed = c.logits.toFloatArray(); // [2, 5, 6]
            int ignoredRows = 0;
            for (int b = 0; b < 2; b++) {
                for (int t = 0; t < 5; t++) {
                    if (t == 4 || labels[b * 5 + t + 1] == -100) {
                        ignoredRows++;
                        for (int v = 0; v < 6; v++) {
                            changed[(b * 5 + t) * 6 + v] += 3.7f * (v + 1);
                        }
                    }
                }
            }
            assertEquals(4, ignoredRows); // row 0: t=1, t=4; row 1: t=2, t=4 (labels[1][0] is never a target)
            NDArray other = m.create(changed, c.logits.getShape()).duplicate();
            float[][] a = lossAndGrad(Losses::causalLm, c.logits, c.labels);
            float[][] b = lossAndGrad(Losses::causalLm, other, c.labels);
            assertEquals(a[0][0], b[0][0], 0f);
            assertArrayEquals(a[1], b[1], 1e-7f);
            for (int b2 = 0; b2 < 2; b2++) {
                for (int v = 0; v < 6; v++) {
                    assertEquals(0f, a[1][(b2 * 5 + 4) * 6 + v], "last position has no target");
                }
            }
            // token classification: ignored tokens at [0,1], [1,2], [1,3]
            Case tc = load(m, "token");
            float[] t2 = tc.logits.toFloatArray();
            for (int pos : new int[] {1, 6, 7}) {
                for (int k = 0; k < 3; k++) {
                    t2[pos * 3 + k] -= 5f * k;
                }
            }
            float[][] x = lossAndGrad(Losses::tokenClassification, tc.logits, tc.labels);
            float[][] y = lossAndGrad(Losses::tokenClassification, m.create(t2, tc.logits.getShape()).duplicate(), tc.labels);
            assertEquals(x[0][0], y[0][0], 0f);
            assertArrayEquals(x[1], y[1], 1e-7f);
            for (int k = 0; k < 3; k++) {
                assertEquals(0f, x[1][3 + k]);
            }
            // all ignored: 0 with zero gradient (torch would give NaN)
            NDArray none = m.full(new Shape(2, 4), -100, ai.djl.ndarray.types.DataType.INT64);
            float[][] z = lossAndGrad(Losses::tokenClassification, tc.logits, none);
            assertEquals(0f, Math.abs(z[0][0]));
            assertEquals(0f, m.create(z[1]).abs().max().getFloat());
        }
    }

    @Test
    void gradientsMatchFiniteDifferences() throws IOException {
        try (NDManager m = NDManager.newBaseManager()) {
            for (String key : new String[] {"causal", "classification", "token"}) {
                Case c = load(m, key);
                BinaryOperator<NDArray> f = key.equals("causal") ? Losses::causalLm
                        : key.equals("token") ? Losses::tokenClassification : Losses::classification;
                float[][] lg = lossAndGrad(f, c.logits, c.labels);
                float[] base = c.logits.toFloatArray();
                for (int idx : new int[] {0, 7, base.length / 2 + 1, base.length - 1}) {
                    double eps = 1e-2;
                    float[] plus = base.clone();
                    float[] minus = base.clone();
                    plus[idx] += (float) eps;
                    minus[idx] -= (float) eps;
                    double fp = f.apply(m.create(plus, c.logits.getShape()), c.labels).getFloat();
                    double fm = f.apply(m.create(minus, c.logits.getShape()), c.labels).getFloat();
                    assertEquals((fp - fm) / (2 * eps), lg[1][idx], 1e-3, key + "[" + idx + "]");
                }
            }
        }
    }

    @Test
    void badShapesAndLabelsAreRejected() {
        try (NDManager m = NDManager.newBaseManager()) {
            assertThrows(IllegalArgumentException.class,
                    () -> Losses.causalLm(m.zeros(new Shape(2, 3, 4)), m.zeros(new Shape(2, 4))));
            assertThrows(IllegalArgumentException.class,
                    () -> Losses.classification(m.zeros(new Shape(2, 3)), m.create(new long[] {0, 3})));
        }
    }
}
