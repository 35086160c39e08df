package io.github.peft4j.nn.quant;

import io.github.peft4j.PeftException;
import java.util.Arrays;
import java.util.Comparator;
import java.util.stream.IntStream;

/**
 * The two 4-bit code tables of bitsandbytes ({@code functional.get_4bit_type}): a 4-bit code {@code q} stands for
 * {@code code()[q] * absmax} of its block.
 */
public enum FourBitType {
    /** NormalFloat4: 16 quantiles of N(0, 1) scaled to [-1, 1], sorted, 0 at code 7 (QLoRA's data type). */
    NF4("nf4", new float[] {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f,
        0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f,
        0.5626170039176941f, 0.7229568362236023f, 1.0f}),
    /**
     * FP4 (1 sign, 2 exponent, 1 mantissa bit) in bit-pattern order, divided by its largest magnitude 12 in fp32,
     * as bitsandbytes does; code 8 ("-0") is +0.0 there as well.
     */
    FP4("fp4", fp4());

    private final String bnbName;
    private final float[] code;
    private final float[] midpoints;
    private final int[] order;

    FourBitType(String bnbName, float[] code) {
        this.bnbName = bnbName;
        this.code = code;
        // bitsandbytes' default backend: midpoints of the sorted table, and the sorted position -> code index
        Integer[] idx = IntStream.range(0, 16).boxed().toArray(Integer[]::new);
        Arrays.sort(idx, Comparator.comparingDouble(i -> code[i])); // stable, as torch.argsort gives here
        this.order = Arrays.stream(idx).mapToInt(Integer::intValue).toArray();
        this.midpoints = new float[15];
        for (int i = 0; i < 15; i++) {
            midpoints[i] = (code[order[i]] + code[order[i + 1]]) / 2f;
        }
    }

    private static float[] fp4() {
        float[] raw = {0f, 0.0625f, 8f, 12f, 4f, 6f, 2f, 3f, 0f, -0.0625f, -8f, -12f, -4f, -6f, -2f, -3f};
        float[] out = new float[16];
        for (int i = 0; i < 16; i++) {
            out[i] = raw[i] / 12f;
        }
        return out;
    }

    /** @return the 16 code values, indexed by the 4-bit code (a copy) */
    public float[] code() {
        return code.clone();
    }

    /** @return bitsandbytes' name: {@code nf4} or {@code fp4} */
    public String bnbName() {
        return bnbName;
    }

    /**
     * The 4-bit code of a value already scaled to [-1, 1]: the number of midpoints of the sorted table strictly
     * below it (a value on a midpoint takes the lower code), mapped back to the table's index.
     *
     * @param scaled {@code x * (1 / absmax)}, clamped to [-1, 1]
     * @return the code, 0..15
     */
    int encode(float scaled) {
        return order[countBelow(midpoints, scaled)];
    }

    /** The number of entries of a sorted array strictly below {@code x} ({@code torch.bucketize}, right=False). */
    static int countBelow(float[] sorted, float x) {
        int lo = 0;
        int hi = sorted.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (sorted[mid] < x) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    /**
     * Looks a type up by bitsandbytes' name.
     *
     * @param name {@code nf4} or {@code fp4} (case-insensitive)
     * @param where what the name came from, for the message
     * @return the type
     */
    public static FourBitType of(String name, String where) {
        for (FourBitType t : values()) {
            if (t.bnbName.equalsIgnoreCase(name)) {
                return t;
            }
        }
        throw new PeftException(where + ": 4-bit quant type '" + name + "' is not supported; expected nf4 or fp4");
    }
}
