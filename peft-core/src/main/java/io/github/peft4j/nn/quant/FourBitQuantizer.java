package io.github.peft4j.nn.quant;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import java.util.Arrays;

/**
 * 4-bit blockwise quantisation as bitsandbytes' CPU ("default" backend) {@code quantize_4bit} /
 * {@code dequantize_4bit}, bit for bit: per block the fp32 absmax; each value scaled by {@code x * (1/absmax)} (the
 * last, partial block: {@code x / absmax}), clamped to [-1, 1] and given the code whose bucket it falls in (a value
 * on a midpoint of two codes takes the lower one); two codes per byte, first element in the high nibble, an odd
 * count padded with the code of 0. With double quantisation ({@code compress_statistics}), the absmax values minus
 * their fp32 mean are quantised blockwise to 8 bits (blocks of 256, {@link DynamicMap}).
 *
 * <p>Known difference from bitsandbytes on the GPU, where the fixtures were not made: an all-zero block gets the
 * code of 0 here (7 for NF4) and 0 on the GPU (the CPU backend's behaviour is what is reproduced).
 */
public final class FourBitQuantizer {
    /** The block size of the double quantisation of absmax values (bitsandbytes' fixed 256). */
    public static final int NESTED_BLOCKSIZE = 256;
    /** The default block size of transformers' {@code BitsAndBytesConfig} and bitsandbytes' {@code Linear4bit}. */
    public static final int DEFAULT_BLOCKSIZE = 64;

    private FourBitQuantizer() {}

    /**
     * Checks a block size as bitsandbytes does.
     *
     * @param blocksize the block size
     * @return it
     */
    public static int checkBlocksize(int blocksize) {
        if (blocksize < 32 || blocksize > 4096 || Integer.bitCount(blocksize) != 1) {
            throw new IllegalArgumentException("4-bit block size must be a power of two from 32 to 4096, got " + blocksize);
        }
        return blocksize;
    }

    /**
     * Quantises a tensor.
     *
     * @param x the values, flattened row-major
     * @param shape their shape
     * @param type NF4 or FP4
     * @param blocksize values per block: a power of two from 32 to 4096
     * @param doubleQuant whether to double-quantise the absmax values
     * @return the quantised tensor
     */
    public static FourBitWeights quantize(float[] x, long[] shape, FourBitType type, int blocksize, boolean doubleQuant) {
        checkBlocksize(blocksize);
        long numel = Arrays.stream(shape).reduce(1, Math::multiplyExact);
        if (numel != x.length) {
            throw new IllegalArgumentException(x.length + " values for shape " + Arrays.toString(shape));
        }
        int n = x.length;
        int blocks = (n + blocksize - 1) / blocksize;
        float[] absmax = new float[blocks];
        byte[] packed = new byte[(n + 1) / 2];
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
                int q = type.encode(DynamicMap.clamp(partial ? x[i] / safe : x[i] * r));
                packed[i >> 1] |= (byte) ((i & 1) == 0 ? q << 4 : q);
            }
        }
        if ((n & 1) == 1) {
            packed[n >> 1] |= (byte) type.encode(0f); // bitsandbytes pads the scaled values with 0
        }
        if (!doubleQuant) {
            return new FourBitWeights(type, blocksize, shape, packed, absmax, null, null, 0f);
        }
        float offset = mean(absmax);
        float[] centred = new float[blocks];
        for (int i = 0; i < blocks; i++) {
            centred[i] = absmax[i] - offset;
        }
        DynamicMap.Blockwise q8 = DynamicMap.quantize(centred, DynamicMap.values(), NESTED_BLOCKSIZE);
        return new FourBitWeights(type, blocksize, shape, packed, null, q8.codes(), q8.absmax(), offset);
    }

    /**
     * The fp32 mean as {@code torch.mean} computes it (libtorch's own reduction, so that the rounding matches).
     *
     * @param v the values
     * @return their mean
     */
    static float mean(float[] v) {
        try (NDManager m = NDManager.newBaseManager(Device.cpu());
                NDArray a = m.create(v)) {
            return a.mean().getFloat();
        }
    }

    /**
     * Dequantises on the host, as bitsandbytes' {@code dequantize_4bit}: {@code code[q] * absmax} in fp32.
     *
     * @param w the quantised tensor
     * @return the values, flattened row-major
     */
    public static float[] dequantize(FourBitWeights w) {
        float[] code = w.type().code();
        float[] absmax = w.blockAbsmax();
        int n = Math.toIntExact(w.numel());
        byte[] packed = w.packed();
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            int b = packed[i >> 1] & 0xFF;
            int q = (i & 1) == 0 ? b >>> 4 : b & 0xF;
            out[i] = code[q] * absmax[i / w.blocksize()];
        }
        return out;
    }
}
