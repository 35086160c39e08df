package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.training.GradientCollector;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import java.util.function.IntFunction;
import org.junit.jupiter.api.Test;

/** Thirty steps of plain SGD on one batch lower the loss clearly, for both methods. */
class PromptTrainingTest {
    private static double train(IntFunction<TransformerModel> factory, PeftConfig config, double lr) {
        try (TransformerModel model = factory.apply(21); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config);
            NDArray ids = TestModels.batch(m, 9, 4, 8);
            double first = Double.NaN;
            double last = Double.NaN;
            for (int step = 0; step < 30; step++) {
                try (NDScope scope = new NDScope()) {
                    NDArray loss;
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        loss = TestModels.causalLoss(peft.forward(ModelInput.of(ids, null)).logits(), ids);
                        gc.backward(loss);
                    }
                    last = loss.getFloat();
                    if (step == 0) {
                        first = last;
                    }
                    for (Param p : peft.trainableParameters().values()) {
                        NDArray g = p.array().getGradient();
                        p.array().subi(g.mul(Ops.scalar(g, lr)));
                    }
                }
            }
            System.out.printf("training %s%s: loss %.4f -> %.4f%n", config.peftType(),
                    config instanceof PrefixTuningConfig c && c.prefixProjection() ? " (projection)" : "", first, last);
            assertTrue(last < 0.8 * first, config.peftType() + ": loss " + first + " -> " + last);
            return last;
        }
    }

    @Test
    void promptTuningLearns() {
        train(TestModels::gpt2, new PromptTuningConfig().numVirtualTokens(6), 1.0);
    }

    @Test
    void prefixTuningLearnsOnGqaLlama() {
        train(TestModels::llama, new PrefixTuningConfig().numVirtualTokens(6), 1.0);
    }

    @Test
    void prefixProjectionLearns() {
        train(TestModels::gpt2, new PrefixTuningConfig().numVirtualTokens(6).prefixProjection(true), 0.5);
    }
}
