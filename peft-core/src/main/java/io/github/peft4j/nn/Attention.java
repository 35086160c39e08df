package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * Scaled dot-product attention and the masks transformers builds for it. Masks are additive: 0 where a
 * query may attend to a key, the dtype's most negative finite value elsewhere; a row with nothing to attend
 * to (a padding query) then attends uniformly, as in transformers. With peft4j's fused library loaded
 * ({@link FusedOps#enabled()}) and no active attention dropout, {@link #attend} is one ATen
 * {@code scaled_dot_product_attention}.
 */
public final class Attention {
    private Attention() {}

    /**
     * Attends.
     *
     * @param q queries {@code [B, H, Q, D]}
     * @param k keys {@code [B, Hkv, K, D]}; {@code H} must be a multiple of {@code Hkv} (grouped-query attention)
     * @param v values {@code [B, Hkv, K, D]}
     * @param mask additive mask broadcastable to {@code [B, H, Q, K]}, or null
     * @param scale the score scale (usually {@code 1/sqrt(D)}), a 0-d array
     * @param dropout attention-probability dropout, or null
     * @return the context {@code [B, Q, H * D]}
     */
    public static NDArray attend(NDArray q, NDArray k, NDArray v, NDArray mask, NDArray scale, Dropout dropout) {
        if (FusedOps.enabled() && (dropout == null || !dropout.isTraining() || dropout.p() == 0f)) {
            // ATen's scaled_dot_product_attention (the scale is a constant: no gradient flows through it)
            double s = scale.getDataType() == DataType.FLOAT32 ? scale.getFloat() : scale.toType(DataType.FLOAT32, false).getFloat();
            return FusedOps.attention(q, k, v, mask, s, false);
        }
        long heads = q.getShape().get(1);
        long kvHeads = k.getShape().get(1);
        if (heads != kvHeads) {
            long rep = heads / kvHeads;
            // [B, Hkv, K, D] -> [B, H, K, D], each kv head repeated rep times in a row (transformers' repeat_kv)
            k = k.repeat(1, rep);
            v = v.repeat(1, rep);
        }
        NDArray scores = q.matMul(k.swapAxes(2, 3)).mul(scale); // [B, H, Q, K]
        if (mask != null) {
            scores = scores.add(mask);
        }
        NDArray probs = scores.softmax(-1);
        if (dropout != null) {
            probs = dropout.forward(probs);
        }
        NDArray ctx = probs.matMul(v); // [B, H, Q, D]
        long b = ctx.getShape().get(0);
        long qLen = ctx.getShape().get(2);
        return ctx.swapAxes(1, 2).reshape(b, qLen, -1);
    }

    /**
     * The additive causal mask with optional key padding.
     *
     * @param manager where to create it
     * @param batch batch size
     * @param queryLen number of query positions
     * @param pastLen number of cached positions before the queries (keys = past + queries)
     * @param keyMask {@code [B, past + queryLen]} 1 for real tokens, 0 for padding; or null
     * @param dtype the compute dtype
     * @return {@code [B or 1, 1, Q, K]}
     */
    public static NDArray causalMask(NDManager manager, long batch, long queryLen, long pastLen, NDArray keyMask,
            DataType dtype) {
        if (FusedOps.enabled()) {
            return FusedOps.causalMask(manager, batch, queryLen, pastLen, keyMask, dtype, minimum(dtype));
        }
        long keyLen = pastLen + queryLen;
        NDArray kIdx = manager.arange(0, keyLen, 1, DataType.INT64); // [K]
        NDArray qIdx = manager.arange(pastLen, keyLen, 1, DataType.INT64).reshape(queryLen, 1); // [Q, 1]
        NDArray allowed = kIdx.lte(qIdx).reshape(1, 1, queryLen, keyLen);
        if (keyMask != null) {
            allowed = allowed.logicalAnd(keyMask.toType(DataType.BOOLEAN, false).reshape(batch, 1, 1, keyLen));
        }
        return toAdditive(allowed, dtype);
    }

    /**
     * The additive padding mask of a bidirectional encoder.
     *
     * @param keyMask {@code [B, K]} 1 for real tokens, 0 for padding
     * @param dtype the compute dtype
     * @return {@code [B, 1, 1, K]}
     */
    public static NDArray paddingMask(NDArray keyMask, DataType dtype) {
        long b = keyMask.getShape().get(0);
        long k = keyMask.getShape().get(1);
        return toAdditive(keyMask.toType(DataType.BOOLEAN, false).reshape(b, 1, 1, k), dtype);
    }

    /** The dtype's most negative finite value (-FLT_MAX would round to -inf in bf16, and 0 * inf is NaN). */
    private static double minimum(DataType dtype) {
        return dtype == DataType.FLOAT16 ? -65504.0 : dtype == DataType.BFLOAT16 ? -3.3895313892515355e38 : -Float.MAX_VALUE;
    }

    private static NDArray toAdditive(NDArray allowed, DataType dtype) {
        double min = minimum(dtype);
        NDArray a = allowed.toType(dtype, false);
        // (1 - allowed) * min  ==  (allowed - 1) * (-min)
        return a.sub(Ops.scalar(a, 1)).mul(Ops.scalar(a, -min));
    }
}
