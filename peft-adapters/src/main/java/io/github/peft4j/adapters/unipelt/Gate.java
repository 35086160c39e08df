package io.github.peft4j.adapters.unipelt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.index.NDIndex;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import java.util.Locale;

/**
 * AdapterHub's gate ({@code use_gating}, UniPELT): {@code mean over positions of sigmoid(z Wᵀ + b)}, one value per
 * row and gate output, which scales a method's contribution (the bottleneck adapter's output, LoRA's update in place of
 * {@code alpha / r}, the prefix keys and values).
 *
 * <p>AdapterHub averages over every position of the call: padding and, in causal models, later tokens included
 * ({@code torch.mean(torch.sigmoid(gate(x)), dim=1)} in {@code methods/modeling.py}, {@code lora.py},
 * {@code prefix_tuning.py}). {@link Positions#ALL} does exactly that, for file parity. {@link Positions#ATTENDED}
 * averages over the positions whose attention mask is 1 only, so a row's gate does not depend on how much padding its
 * batch has; later tokens of a causal model still take part (the gate is one value per row, as the prefix gate
 * scales keys shared by all queries).
 */
public final class Gate {
    /** Which positions a gate averages over: {@code gate_positions} in peft4j's configs. */
    public enum Positions {
        /** Every position of the call, padding and later tokens included (AdapterHub; the default). */
        ALL,
        /** The positions the attention mask marks 1 (no padding). */
        ATTENDED;

        /**
         * @param value {@code "all"}, {@code "attended"} or null (all)
         * @param where for messages
         * @return the value
         */
        public static Positions parse(String value, String where) {
            if (value == null || "all".equals(value)) {
                return ALL;
            }
            if ("attended".equals(value)) {
                return ATTENDED;
            }
            throw new PeftException(where + ": gate_positions '" + value + "'; expected \"all\" (AdapterHub's mean over every"
                    + " position) or \"attended\" (the positions the attention mask marks 1)");
        }

        /** @return the config value */
        public String value() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    private Gate() {}

    /**
     * The gate values of a call.
     *
     * @param z the gate input {@code [B, S, in]}
     * @param weight {@code (k, in)} in z's dtype
     * @param bias {@code (k)} in z's dtype
     * @param positions which positions to average over
     * @param attentionMask the call's key mask {@code [B, past + S]} (1 = attend) for {@link Positions#ATTENDED}, or
     *     null (then every position counts)
     * @return {@code [B, k]}
     */
    public static NDArray mean(NDArray z, NDArray weight, NDArray bias, Positions positions, NDArray attentionMask) {
        NDArray s = ai.djl.nn.Activation.sigmoid(Ops.linear(z, weight, bias)); // [B, S, k]
        if (positions == Positions.ALL || attentionMask == null) {
            return s.mean(new int[] {1});
        }
        long len = z.getShape().get(1);
        long total = attentionMask.getShape().get(1);
        NDArray keep = attentionMask.get(new NDIndex(":, {}:", total - len)).toDevice(z.getDevice(), false).neq(0);
        NDArray ones = z.getManager().ones(keep.getShape(), z.getDataType());
        NDArray m = ai.djl.ndarray.NDArrays.where(keep, ones, ones.zerosLike()).expandDims(-1); // [B, S, 1], a constant
        NDArray count = m.sum(new int[] {1}).maximum(Ops.scalar(m, 1.0)); // [B, 1]
        return s.mul(m).sum(new int[] {1}).div(count);
    }
}
