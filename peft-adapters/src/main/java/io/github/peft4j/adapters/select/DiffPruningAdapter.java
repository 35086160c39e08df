package io.github.peft4j.adapters.select;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.TrainingHooks;
import java.util.Map;

/**
 * A {@code DIFF_PRUNING} adapter: {@link DiffPruningLayer}s plus the L0 penalty, added to the task loss through the
 * trainer's {@link TrainingHooks#extraLoss} hook: {@code l0_lambda * (sum of expected open gates) / (number of gates)}
 * over all its layers.
 */
public final class DiffPruningAdapter extends LayerAdapter implements TrainingHooks {
    private final double lambda;

    /**
     * @param name the adapter name
     * @param config its config
     * @param model the model
     * @param layers module path to layer
     */
    DiffPruningAdapter(String name, DiffPruningConfig config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
        this.lambda = config.l0Lambda();
    }

    /**
     * @return the expected fraction of open gates, {@code mean(sigmoid(log_alpha - beta ln(-gamma / zeta)))}, on the
     *     gradient path of the gate logits (a 0-d fp32 array)
     */
    public NDArray expectedDensity() {
        NDArray sum = null;
        long count = 0;
        for (AdapterLayer l : layers().values()) {
            DiffPruningLayer d = (DiffPruningLayer) l;
            NDArray e = d.expectedOpen(name());
            sum = sum == null ? e : sum.add(e);
            count += d.size();
        }
        return sum.mul(Ops.scalar(sum, 1.0 / count));
    }

    /** @return the fraction of entries whose evaluation-mode gate is open (where the difference can be nonzero) */
    public double openFraction() {
        long open = 0;
        long count = 0;
        for (AdapterLayer l : layers().values()) {
            DiffPruningLayer d = (DiffPruningLayer) l;
            open += d.openGates(name());
            count += d.size();
        }
        return open / (double) count;
    }

    /** @return {@code l0_lambda * expectedDensity()}, or null when {@code l0_lambda} is 0 */
    @Override
    public NDArray extraLoss(TrainingStep step) {
        if (lambda == 0) {
            return null;
        }
        NDArray d = expectedDensity();
        return d.mul(Ops.scalar(d, lambda));
    }
}
