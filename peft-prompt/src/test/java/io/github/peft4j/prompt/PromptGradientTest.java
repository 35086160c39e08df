package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import java.util.Map;
import java.util.function.IntFunction;
import org.junit.jupiter.api.Test;

/** Gradients reach only the prompt parameters and agree with finite differences. */
class PromptGradientTest {
    private static double loss(PeftModel peft, NDArray ids) {
        return TestModels.causalLoss(peft.forward(ModelInput.of(ids, null)).logits(), ids).getFloat();
    }

    private void check(IntFunction<TransformerModel> factory, PeftConfig config) {
        try (TransformerModel model = factory.apply(11); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config);
            NDArray ids = TestModels.batch(m, 5, 2, 7);
            Map<String, Param> trainable = peft.trainableParameters();
            assertEquals(1, trainable.size(), "only the prompt trains: " + trainable.keySet());
            Param prompt = trainable.get("prompt_encoder.default.embedding.weight");
            NDArray grad;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray loss = TestModels.causalLoss(peft.forward(ModelInput.of(ids, null)).logits(), ids);
                gc.backward(loss);
            }
            grad = prompt.array().getGradient().duplicate();
            assertTrue(grad.abs().sum().getFloat() > 0, "prompt gradient is zero");
            for (Map.Entry<String, Param> e : model.parameters().entrySet()) {
                assertFalse(e.getValue().isTrainable(), e.getKey() + " should be frozen");
                assertFalse(e.getValue().array().hasGradient(), e.getKey() + " has a gradient");
            }
            // finite differences (fp32, central, eps 1e-3) on the 3 elements with the largest |gradient|: their
            // change of the loss stands clear of fp32 rounding in the forward pass
            float eps = 1e-3f;
            long cols = prompt.shape().get(1);
            long[] top = grad.abs().flatten().argSort(0, false).get("0:3").toLongArray();
            long[][] at = new long[3][];
            for (int i = 0; i < 3; i++) {
                at[i] = new long[] {top[i] / cols, top[i] % cols};
            }
            for (long[] ix : at) {
                String idx = ix[0] + "," + ix[1];
                float g = grad.getFloat(ix);
                float v = prompt.array().getFloat(ix);
                prompt.array().set(new ai.djl.ndarray.index.NDIndex(idx), v + eps);
                double plus = loss(peft, ids);
                prompt.array().set(new ai.djl.ndarray.index.NDIndex(idx), v - eps);
                double minus = loss(peft, ids);
                prompt.array().set(new ai.djl.ndarray.index.NDIndex(idx), v);
                double fd = (plus - minus) / (2 * eps);
                System.out.printf("grad check %s [%s]: autograd %.6g, finite difference %.6g%n",
                        config.peftType(), idx, g, fd);
                assertEquals(fd, g, 1e-2 * Math.max(Math.abs(fd), Math.abs(g)) + 1e-6, "gradient at [" + idx + "]");
            }
        }
    }

    @Test
    void promptTuningGradient() {
        check(TestModels::gpt2, new PromptTuningConfig().numVirtualTokens(4));
    }

    @Test
    void prefixTuningGradientWithGqa() {
        check(TestModels::llama, new PrefixTuningConfig().numVirtualTokens(3));
    }
}
