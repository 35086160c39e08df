package io.github.peft4j.lora.dora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;

/**
 * DoRA's magnitude vector on one layer for one adapter (HF PEFT 0.21 {@code tuners/lora/dora.py}): the weight
 * {@code W} (seen as {@code (out, in)}) plus the scaled LoRA update {@code s·BA} is split into a direction and a
 * per-output magnitude {@code m}. With {@code g = m / ‖W + s·BA‖_row} (the norm detached from the gradient, as the
 * DoRA paper's section 4.3 and HF do), a layer's output becomes {@code base + (g − 1)·base' + g·lora·s}, where
 * {@code base'} is the base output without its bias; merging writes {@code g ⊙ (W + ΔW)} into the weight.
 *
 * <p>The vector is saved as {@code <module>.lora_magnitude_vector} (HF's key: no {@code .weight} suffix), shape
 * {@code (out)}. For an embedding {@code (vocab, dim)} the "out" side is the embedding dimension: {@code W} is seen
 * transposed, {@code (dim, vocab)}, and the norm runs over the vocabulary.
 */
public final class DoraMagnitude {
    /** The in-memory parameter prefix ({@code lora_magnitude_vector.<adapter>.weight}). */
    public static final String PREFIX = "lora_magnitude_vector";

    /**
     * HF's saved key for the magnitude has no {@code .weight}.
     *
     * @param saved a layer-relative saved name with the adapter name removed
     * @return {@code lora_magnitude_vector} for {@code lora_magnitude_vector.weight}, any other name unchanged
     */
    public static String savedName(String saved) {
        return saved.equals(PREFIX + ".weight") ? PREFIX : saved;
    }
    private final Param magnitude;
    /** The norm the merge used (HF caches it: the merged weight no longer gives it back). */
    private NDArray mergedNorm;

    /**
     * @param magnitude the trainable vector {@code (out)}
     */
    public DoraMagnitude(Param magnitude) {
        this.magnitude = magnitude;
    }

    /**
     * The magnitude HF initialises: the row norms of {@code W + s·BA} at the adapter's initial A and B.
     *
     * @param weightOutIn the base weight as {@code (out, in)}
     * @param scaledDelta {@code s·BA}, {@code (out, in)}
     * @return a new fp32 array {@code (out)} in the weight's manager
     */
    public static NDArray initial(NDArray weightOutIn, NDArray scaledDelta) {
        try (NDArray n = rowNorm(weightOutIn.toType(DataType.FLOAT32, false), scaledDelta.toType(DataType.FLOAT32, false))) {
            NDArray out = n.duplicate();
            out.attach(weightOutIn.getManager());
            return out;
        }
    }

    /** {@code ‖W + Δ‖} per output row, {@code (out)}. */
    private static NDArray rowNorm(NDArray weightOutIn, NDArray scaledDelta) {
        return weightOutIn.add(scaledDelta).square().sum(new int[] {1}).sqrt();
    }

    /** @return the magnitude parameter */
    public Param magnitude() {
        return magnitude;
    }

    /**
     * The forward scale {@code g = m / ‖W + s·BA‖_row}, the norm computed from detached arrays.
     *
     * @param weightOutIn the base weight as {@code (out, in)}, in the compute dtype
     * @param scaledDelta {@code s·BA} {@code (out, in)}, detached
     * @return {@code g}, {@code (out)}, in the dtype of {@code weightOutIn}; it carries m's gradient
     */
    public NDArray scale(NDArray weightOutIn, NDArray scaledDelta) {
        NDArray norm = rowNorm(weightOutIn, scaledDelta).stopGradient();
        NDArray m = io.github.peft4j.nn.Ops.cast(magnitude.array(), norm.getDataType()); // fp32 leaf, cast in forward
        return m.div(norm);
    }

    /**
     * A DoRA layer's term added to the running output: {@code (g − 1)·base + g·lora}.
     *
     * @param g the scale from {@link #scale}
     * @param base the base output without bias, {@code [..., out]}
     * @param scaledLora the LoRA branch output times the scaling, {@code [..., out]}
     * @return the term, {@code [..., out]}
     */
    public static NDArray term(NDArray g, NDArray base, NDArray scaledLora) {
        return base.mul(g.sub(Ops.scalar(g, 1.0))).add(scaledLora.mul(g));
    }

    /**
     * The merged weight {@code g ⊙ (W + ΔW)} in the stored layout; remembers the norm for {@link #unmerged}.
     *
     * @param stored the weight as stored now (it may already hold other merged adapters)
     * @param cleanOutIn the weight with no adapter merged, as {@code (out, in)}
     * @param deltaStored {@code ΔW = s·BA} in the stored layout
     * @param storedInOut whether the stored layout is {@code (in, out)} (GPT-2 Conv1D, embeddings)
     * @return the new weight (a new array; the caller copies it into the parameter)
     */
    public NDArray merged(NDArray stored, NDArray cleanOutIn, NDArray deltaStored, boolean storedInOut) {
        NDArray deltaOutIn = storedInOut ? deltaStored.transpose() : deltaStored;
        NDArray norm = rowNorm(cleanOutIn, deltaOutIn);
        if (mergedNorm != null) {
            mergedNorm.close();
        }
        mergedNorm = norm.duplicate();
        mergedNorm.attach(stored.getManager());
        NDScope.unregister(mergedNorm);
        return stored.add(deltaStored).mul(factor(norm, storedInOut));
    }

    /**
     * The weight before {@link #merged}: {@code W' / g − ΔW}, with the norm the merge used.
     *
     * @param stored the merged weight
     * @param deltaStored {@code ΔW} in the stored layout
     * @param storedInOut whether the stored layout is {@code (in, out)}
     * @return the new weight (a new array)
     */
    public NDArray unmerged(NDArray stored, NDArray deltaStored, boolean storedInOut) {
        if (mergedNorm == null) {
            throw new PeftException("DoRA: unmerge without a merge on this layer");
        }
        NDArray out = stored.div(factor(mergedNorm, storedInOut)).sub(deltaStored);
        mergedNorm.close();
        mergedNorm = null;
        return out;
    }

    /** {@code m / norm} shaped to broadcast over the stored layout: {@code (out, 1)} or {@code (1, out)}. */
    private NDArray factor(NDArray norm, boolean storedInOut) {
        NDArray g = magnitude.array().toType(norm.getDataType(), false).div(norm);
        return storedInOut ? g.reshape(1, -1) : g.reshape(-1, 1);
    }

    /** Frees the cached norm. */
    public void close() {
        if (mergedNorm != null) {
            mergedNorm.close();
            mergedNorm = null;
        }
    }
}
