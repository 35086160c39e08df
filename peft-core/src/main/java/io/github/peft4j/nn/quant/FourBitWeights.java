package io.github.peft4j.nn.quant;

import java.util.Arrays;

/**
 * A 4-bit quantised tensor on the host, laid out as bitsandbytes stores it: the tensor flattened row-major into
 * blocks of {@code blocksize} values (the last may be partial), two 4-bit codes per byte (the first element in the
 * high nibble, an odd count padded), and the fp32 absmax of each block, either as is or double-quantised (8-bit
 * codes into {@link DynamicMap}, an fp32 absmax per {@value FourBitQuantizer#NESTED_BLOCKSIZE} of them, plus the
 * mean that was subtracted first).
 *
 * @param type NF4 or FP4
 * @param blocksize values per block
 * @param shape the original shape, e.g. {@code (out, in)}
 * @param packed {@code (n + 1) / 2} bytes
 * @param absmax the fp32 absmax per block, or null when double-quantised
 * @param absmax8 the 8-bit absmax codes per block when double-quantised, else null
 * @param nestedAbsmax the fp32 absmax per block of 256 absmax codes when double-quantised, else null
 * @param offset the subtracted mean of the absmax values when double-quantised, else 0
 */
public record FourBitWeights(FourBitType type, int blocksize, long[] shape, byte[] packed, float[] absmax,
        byte[] absmax8, float[] nestedAbsmax, float offset) {

    /** Checks that the parts fit together. */
    public FourBitWeights {
        long n = Arrays.stream(shape).reduce(1, Math::multiplyExact);
        long blocks = (n + blocksize - 1) / blocksize;
        if (packed.length != (n + 1) / 2) {
            throw new IllegalArgumentException("packed has " + packed.length + " bytes, shape " + Arrays.toString(shape)
                    + " needs " + (n + 1) / 2);
        }
        if ((absmax == null) == (absmax8 == null) || (absmax8 == null) != (nestedAbsmax == null)) {
            throw new IllegalArgumentException("either absmax, or absmax8 with nestedAbsmax, must be given");
        }
        int nb = absmax != null ? absmax.length : absmax8.length;
        if (nb != blocks) {
            throw new IllegalArgumentException("absmax has " + nb + " values, " + n + " values in blocks of " + blocksize
                    + " need " + blocks);
        }
        if (nestedAbsmax != null && nestedAbsmax.length
                != (blocks + FourBitQuantizer.NESTED_BLOCKSIZE - 1) / FourBitQuantizer.NESTED_BLOCKSIZE) {
            throw new IllegalArgumentException("nested absmax has " + nestedAbsmax.length + " values for " + blocks
                    + " blocks");
        }
        shape = shape.clone();
    }

    /** @return whether the absmax values are double-quantised */
    public boolean doubleQuant() {
        return absmax8 != null;
    }

    /** @return the number of quantised values */
    public long numel() {
        return Arrays.stream(shape).reduce(1, Math::multiplyExact);
    }

    /** @return the number of blocks */
    public int blocks() {
        return absmax != null ? absmax.length : absmax8.length;
    }

    /** @return the fp32 absmax of every block: as stored, or reconstructed from the double quantisation */
    public float[] blockAbsmax() {
        return absmax != null ? absmax.clone() : DynamicMap.dequantize(absmax8, nestedAbsmax, offset);
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    /**
     * The bytes this weight takes as bitsandbytes stores it: codes, absmax (1 or 4 bytes a block), nested absmax and
     * offset; the shared code tables (16 and 256 fp32 values, one copy per tensor on disk) are not counted.
     *
     * @return bytes
     */
    public long storageBytes() {
        long b = packed.length;
        if (doubleQuant()) {
            b += absmax8.length + 4L * nestedAbsmax.length + 4;
        } else {
            b += 4L * absmax.length;
        }
        return b;
    }

    /** @return {@link #storageBytes()} in bits per quantised value */
    public double bitsPerWeight() {
        return 8.0 * storageBytes() / numel();
    }
}
