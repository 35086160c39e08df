package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import java.util.function.BinaryOperator;

/**
 * Computation a method installs at a {@link SiteRole#ATTENTION_OUTPUT} or {@link SiteRole#FFN_OUTPUT} site to
 * replace how the sub-block ends ({@link HookSite#finish}): by default the model adds the residual stream and, in
 * post-LN models (BERT), applies its LayerNorm. A bottleneck adapter with AdapterHub's
 * {@code original_ln_after: false} returns its output as it is instead. The finisher decides itself whether it acts
 * on this call; where it does not (its adapter inactive, or rows of other adapters in a mixed batch) it returns what
 * {@code previous} gives.
 */
@FunctionalInterface
public interface SiteFinisher {
    /**
     * @param output the sub-block output after every hook of the site {@code [B, S, hidden]}
     * @param residual the residual stream {@code [B, S, hidden]}
     * @param standard the model's own finishing step ({@link HookSite#standardFinish})
     * @param previous what the finishers installed before this one give ({@code standard} when none)
     * @return the stream after the sub-block {@code [B, S, hidden]}
     */
    NDArray finish(NDArray output, NDArray residual, BinaryOperator<NDArray> standard, BinaryOperator<NDArray> previous);
}
