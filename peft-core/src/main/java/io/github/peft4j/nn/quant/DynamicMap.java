package io.github.peft4j.nn.quant;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * bitsandbytes' signed 8-bit dynamic code map ({@code functional.create_dynamic_map()}: 7 exponent bits, 256 sorted
 * values from -0.99296875 to 1) and the 8-bit blockwise quantisation that double quantisation applies to the 4-bit
 * absmax values. The map is computed as bitsandbytes computes it, with libtorch's fp32 {@code linspace} and fp32
 * arithmetic, so that it equals bitsandbytes' table bit for bit.
 */
public final class DynamicMap {
    private static volatile float[] map;

    private DynamicMap() {}

    /** @return the 256 values, sorted (a copy) */
    public static float[] values() {
        float[] m = map;
        if (m == null) {
            synchronized (DynamicMap.class) {
                if (map == null) {
                    map = create();
                }
                m = map;
            }
        }
        return m.clone();
    }

    private static float[] create() {
        final int maxExponentBits = 7;
        final int nonSignBits = 7;
        List<Float> data = new ArrayList<>();
        try (NDManager m = NDManager.newBaseManager(Device.cpu())) {
            for (int i = 0; i < maxExponentBits; i++) {
                int fractionItems = (1 << (i + nonSignBits - maxExponentBits)) + 1;
                NDArray boundaries = m.linspace(0.1f, 1f, fractionItems);
                long n = boundaries.size();
                NDArray means = boundaries.get("0:" + (n - 1)).add(boundaries.get("1:")).div(2f);
                // (10 ** k) * means in fp32: the Python scalar is cast to float32 first, as torch does
                float scale = (float) Math.pow(10, -(maxExponentBits - 1) + i);
                for (float v : means.mul(scale).toFloatArray()) {
                    data.add(v);
                }
                for (float v : means.mul(-scale).toFloatArray()) {
                    data.add(v);
                }
            }
        }
        data.add(0f);
        data.add(1f);
        if (data.size() != 256) {
            throw new IllegalStateException("dynamic map has " + data.size() + " values, expected 256");
        }
        float[] out = new float[256];
        for (int i = 0; i < 256; i++) {
            out[i] = data.get(i);
        }
        Arrays.sort(out);
        return out;
    }

    /** The result of {@link #quantize}: one code per value and an fp32 absmax per block. */
    record Blockwise(byte[] codes, float[] absmax) {}

    /**
     * bitsandbytes' blockwise 8-bit quantisation (default backend {@code quantize_blockwise}): per block of
     * {@code blocksize} values the fp32 absmax, then {@code x * (1/absmax)} (the last, partial block:
     * {@code x / absmax}) clamped to [-1, 1], and the number of midpoints of {@code code} strictly below it.
     *
     * @param x the values
     * @param code a sorted code table of 256 values
     * @param blocksize the block size
     * @return codes and absmax
     */
    static Blockwise quantize(float[] x, float[] code, int blocksize) {
        float[] mids = new float[code.length - 1];
        for (int i = 0; i < mids.length; i++) {
            mids[i] = (code[i] + code[i + 1]) / 2f;
        }
        int n = x.length;
        int blocks = (n + blocksize - 1) / blocksize;
        float[] absmax = new float[blocks];
        byte[] q = new byte[n];
        for (int b = 0; b < blocks; b++) {
            int from = b * blocksize;
            int to = Math.min(n, from + blocksize);
            float am = 0f;
            for (int i = from; i < to; i++) {
                am = Math.max(am, Math.abs(x[i]));
            }
            absmax[b] = am;
            float safe = Math.max(am, 1e-38f);
            boolean partial = to - from < blocksize;
            float r = 1f / safe;
            for (int i = from; i < to; i++) {
                float s = clamp(partial ? x[i] / safe : x[i] * r);
                q[i] = (byte) FourBitType.countBelow(mids, s);
            }
        }
        return new Blockwise(q, absmax);
    }

    /**
     * Reconstructs double-quantised absmax values: {@code code[q] * nested[k / 256] + offset}, in fp32.
     *
     * @param q the 8-bit codes
     * @param nested the fp32 absmax of each block of 256 codes
     * @param offset the mean that was subtracted before quantising
     * @return the absmax values
     */
    static float[] dequantize(byte[] q, float[] nested, float offset) {
        float[] code = values();
        float[] out = new float[q.length];
        for (int i = 0; i < q.length; i++) {
            out[i] = code[q[i] & 0xFF] * nested[i / FourBitQuantizer.NESTED_BLOCKSIZE] + offset;
        }
        return out;
    }

    static float clamp(float v) {
        return v < -1f ? -1f : (v > 1f ? 1f : v);
    }
}
