package io.github.peft4j.adapters.select;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.TrainingHooks;
import io.github.peft4j.train.Optimizer;
import java.util.Map;
import java.util.Random;

/** Helpers of the selective-method tests: ids, a causal loss, a training loop that runs the adapters' hooks. */
final class SelectTesting {
    private SelectTesting() {}

    static NDArray ids(NDManager m, int vocab, long seed) {
        Random r = new Random(seed);
        long[] v = new long[16];
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextInt(vocab);
        }
        NDArray t = m.create(v, new Shape(2, 8));
        NDArray owned = t.duplicate(); // create() aliases Java memory
        t.close();
        return owned;
    }

    static NDArray logits(PeftModel peft, NDArray ids) {
        return peft.forward(ModelInput.of(ids, null)).logits();
    }

    /** Mean next-token cross-entropy with libtorch-owned constants. */
    static NDArray causalLoss(NDArray logits, NDArray ids) {
        long s = ids.getShape().get(1);
        NDArray pred = logits.get(":, :" + (s - 1) + ", :").logSoftmax(-1);
        NDArray target = ids.get(":, 1:").oneHot((int) logits.getShape().get(2)).toType(DataType.FLOAT32, false);
        NDArray n = Ops.scalar(pred, (double) (ids.getShape().get(0) * (s - 1)));
        return pred.mul(target).sum().neg().div(n);
    }

    /**
     * Steps of an optimizer on the causal loss plus every active adapter's extra loss, with the after-backward hook.
     *
     * @return {first loss, last loss} (task loss only)
     */
    static double[] train(PeftModel peft, NDArray ids, Optimizer opt, int steps, double lr) {
        double first = 0;
        double last = 0;
        Map<String, Param> params = peft.trainableParameters();
        peft.model().train(true);
        for (int step = 1; step <= steps; step++) {
            TrainingHooks.TrainingStep now = new TrainingHooks.TrainingStep(step, steps);
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope();
                    GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray task = causalLoss(logits(peft, ids), ids);
                NDArray loss = task;
                for (TrainingHooks h : peft.activeCapabilities(TrainingHooks.class)) {
                    NDArray extra = h.extraLoss(now);
                    if (extra != null) {
                        loss = loss.add(extra);
                    }
                }
                gc.backward(loss);
                last = task.getFloat();
                peft.activeCapabilities(TrainingHooks.class).forEach(h -> h.afterBackward(now));
            }
            if (step == 1) {
                first = last;
            }
            opt.step(params, lr);
        }
        peft.model().train(false);
        return new double[] {first, last};
    }

    static double diff(NDArray a, NDArray b) {
        return a.sub(b).abs().max().getFloat();
    }
}
