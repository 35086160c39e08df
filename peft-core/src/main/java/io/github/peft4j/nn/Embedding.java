package io.github.peft4j.nn;

import ai.djl.ndarray.NDArray;

/** {@code torch.nn.Embedding}: weight {@code (num, dim)}; input integer ids, output {@code [..., dim]}. */
public class Embedding extends Module implements Layer {
    private final Param weight;

    /**
     * Creates the embedding over an existing array.
     *
     * @param weight {@code (num, dim)}
     */
    public Embedding(NDArray weight) {
        this.weight = register("weight", new Param(weight));
    }

    @Override
    public NDArray forward(NDArray ids) {
        return ai.djl.nn.core.Embedding.embedding(ids, weight.array(), ai.djl.ndarray.types.SparseFormat.DENSE).head();
    }

    /** @return the weight parameter */
    public Param weight() {
        return weight;
    }

    /** @return the number of rows (vocabulary size) */
    public long numEmbeddings() {
        return weight.shape().get(0);
    }

    /** @return the embedding dimension */
    public long dim() {
        return weight.shape().get(1);
    }
}
