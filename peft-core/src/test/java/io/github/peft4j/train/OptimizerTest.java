package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Param;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * AdamW and SGD against torch.optim on fixed tensors and gradients (fixture from make_train_fixtures.py): the
 * parameters after each of 5 steps agree within 1e-6, weight decay skips the excluded 'bias', gradients are
 * zeroed after each step (otherwise the fed gradients would accumulate), and state()/loadState() resumes exactly.
 */
class OptimizerTest {
    static JsonNode fixture(String file) throws IOException {
        return new ObjectMapper().readTree(Fixtures.root().getParent().resolve("train").resolve(file).toFile());
    }

    private static float[] floats(JsonNode n) {
        float[] f = new float[n.size()];
        for (int i = 0; i < f.length; i++) {
            f[i] = (float) n.get(i).asDouble();
        }
        return f;
    }

    private static Shape shape(JsonNode n) {
        long[] s = new long[n.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = n.get(i).asLong();
        }
        return new Shape(s);
    }

    private static Map<String, Param> params(NDManager m, JsonNode c) {
        Map<String, Param> params = new LinkedHashMap<>();
        for (Iterator<String> it = c.get("shapes").fieldNames(); it.hasNext();) {
            String name = it.next();
            Param p = new Param(m.create(floats(c.get("initial").get(name)), shape(c.get("shapes").get(name))).duplicate());
            p.setTrainable(true);
            params.put(name, p);
        }
        return params;
    }

    /** Sets each parameter's gradient to the fixture's by backward of sum(p * g). */
    private static void feedGradients(NDManager m, JsonNode c, Map<String, Param> params, int step) {
        Map<String, NDArray> gs = new HashMap<>();
        for (Map.Entry<String, Param> e : params.entrySet()) {
            gs.put(e.getKey(), m.create(floats(c.get("grads").get(step).get(e.getKey())), e.getValue().shape()).duplicate());
        }
        try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
            NDArray total = null;
            for (Map.Entry<String, Param> e : params.entrySet()) {
                NDArray t = e.getValue().array().mul(gs.get(e.getKey())).sum();
                total = total == null ? t : total.add(t);
            }
            gc.backward(total);
        }
    }

    private static void assertStep(JsonNode c, Map<String, Param> params, int step, String what) {
        for (Map.Entry<String, Param> e : params.entrySet()) {
            float[] want = floats(c.get("after").get(step).get(e.getKey()));
            float[] got = e.getValue().array().toFloatArray();
            for (int i = 0; i < want.length; i++) {
                assertEquals(want[i], got[i], 1e-6, what + " step " + (step + 1) + " " + e.getKey() + "[" + i + "]");
            }
        }
    }

    private static void check(String key, Supplier<Optimizer> make) throws IOException {
        JsonNode c = fixture("optimizer.json").get(key);
        try (NDManager m = NDManager.newBaseManager()) {
            Map<String, Param> params = params(m, c);
            try (Optimizer opt = make.get()) {
                for (int step = 0; step < 5; step++) {
                    feedGradients(m, c, params, step);
                    opt.step(params, c.get("lr").get(step).asDouble());
                    assertStep(c, params, step, key);
                    for (Param p : params.values()) {
                        assertEquals(0f, p.array().getGradient().abs().max().getFloat(), "gradient zeroed");
                    }
                }
                assertEquals(5, opt.steps());
            }
            // resume: 2 steps, state -> new optimizer, steps 3..5 must still match torch
            Map<String, Param> again = params(m, c);
            Optimizer first = make.get();
            for (int step = 0; step < 2; step++) {
                feedGradients(m, c, again, step);
                first.step(again, c.get("lr").get(step).asDouble());
            }
            Map<String, NDArray> state = first.state();
            assertEquals(2L, state.get("step").toLongArray()[0]);
            try (Optimizer second = make.get()) {
                second.loadState(state);
                first.close(); // the copy must not depend on the first optimizer's arrays
                assertEquals(2, second.steps());
                for (int step = 2; step < 5; step++) {
                    feedGradients(m, c, again, step);
                    second.step(again, c.get("lr").get(step).asDouble());
                    assertStep(c, again, step, key + " resumed");
                }
            }
        }
    }

    @Test
    void adamwMatchesTorch() throws IOException {
        JsonNode cfg = fixture("optimizer.json").get("adamw").get("config");
        check("adamw", () -> AdamW.builder().betas(cfg.get("beta1").asDouble(), cfg.get("beta2").asDouble())
                .eps(cfg.get("eps").asDouble()).weightDecay(cfg.get("weight_decay").asDouble()).build());
    }

    @Test
    void sgdWithMomentumMatchesTorch() throws IOException {
        JsonNode cfg = fixture("optimizer.json").get("sgd").get("config");
        check("sgd", () -> Sgd.builder().momentum(cfg.get("momentum").asDouble())
                .weightDecay(cfg.get("weight_decay").asDouble()).build());
    }

    @Test
    void frozenAndGradientlessParametersAreSkippedAndStateKeysAreChecked() {
        try (NDManager m = NDManager.newBaseManager(); AdamW opt = AdamW.builder().build()) {
            Param frozen = new Param(m.ones(new Shape(3)));
            Param noGrad = new Param(m.ones(new Shape(3)));
            noGrad.setTrainable(true);
            Map<String, Param> params = Map.of("a.weight", frozen, "b.weight", noGrad);
            opt.step(params, 0.1);
            assertEquals(3f, frozen.array().sum().getFloat());
            assertEquals(3f, noGrad.array().sum().getFloat());
            assertEquals(1, opt.steps());
            Map<String, NDArray> state = opt.state();
            assertEquals(1, state.size()); // only "step": no buffers for untouched params
            NDArray bad = m.zeros(new Shape(3));
            assertThrows(PeftException.class, () -> opt.loadState(Map.of("step", state.get("step"), "momentum.x", bad)));
            assertThrows(PeftException.class, () -> opt.loadState(Map.of("exp_avg.x", bad)));
        }
        assertTrue(BaseOptimizer.DEFAULT_DECAY_EXCLUDED.test("model.norm.weight"));
        assertTrue(BaseOptimizer.DEFAULT_DECAY_EXCLUDED.test("transformer.h.0.ln_1.weight"));
        assertTrue(BaseOptimizer.DEFAULT_DECAY_EXCLUDED.test("encoder.layer.0.output.LayerNorm.weight"));
        assertTrue(BaseOptimizer.DEFAULT_DECAY_EXCLUDED.test("q_proj.lora_B.default.bias"));
        assertTrue(!BaseOptimizer.DEFAULT_DECAY_EXCLUDED.test("model.layers.0.self_attn.q_proj.lora_A.default.weight"));
    }
}
