package io.github.peft4j.model;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import org.junit.jupiter.api.Test;

class SentenceEmbeddingsTest {
    @Test
    void meanOverRealTokensOnly() {
        try (NDManager m = NDManager.newBaseManager()) {
            // [2, 3, 2]: the second sequence has one padding position holding junk
            NDArray h = m.create(new float[] {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 999, -999}, new Shape(2, 3, 2));
            NDArray mask = m.create(new long[][] {{1, 1, 1}, {1, 1, 0}});
            assertArrayEquals(new float[] {3, 4, 20, 30}, SentenceEmbeddings.meanPool(h, mask).toFloatArray(), 1e-6f);
            assertArrayEquals(new float[] {3, 4, 346.3333f, -313}, SentenceEmbeddings.meanPool(h, null).toFloatArray(), 1e-3f);
            NDArray allPad = m.create(new long[][] {{0, 0, 0}, {1, 0, 0}});
            assertArrayEquals(new float[] {0, 0, 10, 20}, SentenceEmbeddings.meanPool(h, allPad).toFloatArray(), 1e-6f);
            assertArrayEquals(new float[] {0.6f, 0.8f, 0, 0},
                    SentenceEmbeddings.normalize(m.create(new float[] {3, 4, 0, 0}, new Shape(2, 2))).toFloatArray(), 1e-6f);
            assertThrows(PeftException.class, () -> SentenceEmbeddings.meanPool(h, m.create(new long[][] {{1, 1}})));
        }
    }
}
