package io.github.peft4j.prompt.ptuning;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Losses;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Gradients of both P-tuning encoders agree with central finite differences: the whole encoder in float64 (every
 * parameter tensor, the largest-gradient element and random ones; tight tolerance), and the encoder inside a model's
 * causal-LM loss in fp32 (the largest-gradient elements). Only the encoder's parameters get gradients.
 */
class PTuningGradientTest {
    private static final double EPS64 = 1e-6;

    /** {@code sum(out * weights)}: a scalar that depends on every output element differently. */
    private static NDArray weighted(NDArray out, NDArray weights) {
        return out.mul(weights).sum();
    }

    private static double[] values(NDArray a) {
        return a.toType(DataType.FLOAT64, false).toDoubleArray();
    }

    private static void checkEncoderInFloat64(PromptEncoderConfig config) {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(3);
            PromptEncoderAdapter adapter = (PromptEncoderAdapter) peft.addAdapter("default", config);
            Map<String, Param> params = adapter.parameters();
            for (Param p : params.values()) { // the same values in float64, still trainable leaves
                NDArray d = p.array().toType(DataType.FLOAT64, true);
                d.attach(model.manager());
                p.set(d);
            }
            Shape out = adapter.savedShape();
            Random r = new Random(5);
            double[] w = new double[(int) out.size()];
            for (int i = 0; i < w.length; i++) {
                w[i] = r.nextGaussian();
            }
            NDArray weights = m.create(w, out).duplicate();
            Map<String, double[]> grads = new java.util.LinkedHashMap<>();
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(weighted(adapter.stateDict().get(PromptEncoderAdapter.KEY), weights));
            }
            params.forEach((k, p) -> grads.put(k, values(p.array().getGradient())));
            int checked = 0;
            double worst = 0;
            for (Map.Entry<String, Param> e : params.entrySet()) {
                Param p = e.getValue();
                double[] g = grads.get(e.getKey());
                assertTrue(java.util.Arrays.stream(g).anyMatch(x -> x != 0), e.getKey() + " has no gradient");
                List<Integer> at = new ArrayList<>();
                int best = 0;
                for (int i = 1; i < g.length; i++) {
                    best = Math.abs(g[i]) > Math.abs(g[best]) ? i : best;
                }
                at.add(best);
                for (int k = 0; k < 4; k++) {
                    at.add(r.nextInt(g.length));
                }
                for (int i : at) {
                    double[] v = values(p.array());
                    double orig = v[i];
                    v[i] = orig + EPS64;
                    double plus = loss(adapter, p, v, weights);
                    v[i] = orig - EPS64;
                    double minus = loss(adapter, p, v, weights);
                    v[i] = orig;
                    loss(adapter, p, v, weights);
                    double fd = (plus - minus) / (2 * EPS64);
                    double err = Math.abs(fd - g[i]);
                    worst = Math.max(worst, err / Math.max(1e-3, Math.abs(g[i])));
                    assertEquals(fd, g[i], 1e-6 * Math.max(1, Math.abs(g[i])), e.getKey() + "[" + i + "]");
                    checked++;
                }
            }
            System.out.printf("grad check P-tuning %s encoder (float64): %d elements of %d tensors, worst relative error %.2e%n",
                    config.encoderReparameterizationType(), checked, params.size(), worst);
        }
    }

    /** Sets the parameter's values and evaluates the weighted output without recording. */
    private static double loss(PromptEncoderAdapter adapter, Param p, double[] v, NDArray weights) {
        p.array().set(v);
        return weighted(adapter.stateDict().get(PromptEncoderAdapter.KEY), weights).getDouble();
    }

    @Test
    void mlpEncoderGradientInFloat64() {
        checkEncoderInFloat64(new PromptEncoderConfig().numVirtualTokens(3).encoderHiddenSize(8));
    }

    @Test
    void lstmEncoderGradientInFloat64() {
        checkEncoderInFloat64(new PromptEncoderConfig().numVirtualTokens(4).encoderHiddenSize(5)
                .encoderReparameterizationType(PromptEncoderConfig.LSTM).encoderNumLayers(2));
    }

    private static double modelLoss(PeftModel peft, NDArray ids, NDArray labels) {
        return Losses.causalLm(peft.forward(ModelInput.of(ids, null)).logits(), labels).getFloat();
    }

    private static void checkThroughModel(PromptEncoderConfig config, List<String> names) {
        try (TransformerModel model = TinyModels.llama(); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            Engine.getInstance().setRandomSeed(4);
            peft.addAdapter("default", config);
            NDArray ids = TinyModels.ids(m, 2, 6, 9).duplicate();
            int n = config.numVirtualTokens();
            NDArray labels = m.full(new Shape(2, n), Example.IGNORE, DataType.INT64).concat(ids, 1);
            Map<String, Param> trainable = peft.trainableParameters();
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                gc.backward(Losses.causalLm(peft.forward(ModelInput.of(ids, null)).logits(), labels));
            }
            for (Map.Entry<String, Param> e : model.parameters().entrySet()) {
                assertFalse(e.getValue().isTrainable(), e.getKey() + " should be frozen");
                assertFalse(e.getValue().array().hasGradient(), e.getKey() + " has a gradient");
            }
            trainable.keySet().forEach(k -> assertTrue(k.startsWith("prompt_encoder.default."), k + " trains"));
            for (String name : names) {
                Param p = trainable.get("prompt_encoder.default." + name);
                float[] g = p.array().getGradient().toFloatArray();
                Integer[] order = new Integer[g.length];
                for (int i = 0; i < g.length; i++) {
                    order[i] = i;
                }
                java.util.Arrays.sort(order, (a, b) -> Float.compare(Math.abs(g[b]), Math.abs(g[a])));
                for (int k = 0; k < 2; k++) {
                    int i = order[k];
                    double fd = TinyModels.finiteDifference(p, i, 5e-3f, () -> modelLoss(peft, ids, labels));
                    System.out.printf("grad check P-tuning %s through the model %s[%d]: autograd %.6g, finite difference %.6g%n",
                            config.encoderReparameterizationType(), name, i, g[i], fd);
                    // fp32 loss (about 5) over a 1e-2 step: rounding alone moves the difference by up to ~1e-4
                    assertEquals(fd, g[i], 1e-2 * Math.max(Math.abs(fd), Math.abs(g[i])) + 5e-4, name + "[" + i + "]");
                }
            }
        }
    }

    @Test
    void mlpEncoderGradientThroughTheModel() {
        checkThroughModel(new PromptEncoderConfig().numVirtualTokens(3).encoderHiddenSize(16),
                List.of("embedding.weight", "mlp_head.0.weight", "mlp_head.4.bias"));
    }

    @Test
    void lstmEncoderGradientThroughTheModel() {
        checkThroughModel(new PromptEncoderConfig().numVirtualTokens(3).encoderHiddenSize(8)
                        .encoderReparameterizationType(PromptEncoderConfig.LSTM),
                List.of("embedding.weight", "lstm_head.weight_ih_l0", "lstm_head.weight_hh_l1_reverse", "mlp_head.2.weight"));
    }
}
