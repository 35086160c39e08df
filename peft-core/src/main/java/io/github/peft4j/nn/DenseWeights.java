package io.github.peft4j.nn;

/**
 * The dense weights of a {@link Projection} {@code y = x W^T + b}, exposed for merging: {@link Linear} stores
 * {@code W} as {@code (out, in)}, GPT-2's {@link Conv1D} as {@code (in, out)}.
 */
public interface DenseWeights {
    /** @return the weight parameter, in its stored layout */
    Param weight();

    /** @return the bias parameter, or null */
    Param bias();

    /** @return true when the weight is stored {@code (in, out)} (GPT-2 Conv1D), as HF's {@code fan_in_fan_out} */
    boolean fanInFanOut();
}
