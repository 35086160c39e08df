package io.github.peft4j.data;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.util.List;
import org.junit.jupiter.api.Test;

class CollatorTest {
    private static final long I = Example.IGNORE;

    @Test
    void rightPaddingCausalLm() {
        try (NDManager m = NDManager.newBaseManager()) {
            Batch b = new Collator(9, false).collate(m, List.of(
                    Example.tokens(1, 2, 3),
                    Example.labelled(new int[] {4, 5}, new int[] {-100, 5}),
                    new Example(new int[] {6, 7, 0}, new int[] {1, 1, 0}, null, -1)));
            assertEquals(new Shape(3, 3), b.inputIds().getShape());
            assertEquals(DataType.INT64, b.inputIds().getDataType());
            assertArrayEquals(new long[] {1, 2, 3, 4, 5, 9, 6, 7, 0}, b.inputIds().toLongArray());
            assertArrayEquals(new long[] {1, 1, 1, 1, 1, 0, 1, 1, 0}, b.attentionMask().toLongArray());
            assertArrayEquals(new long[] {1, 2, 3, I, 5, I, 6, 7, I}, b.labels().toLongArray());
            assertEquals(3, b.size());
            assertEquals(7, b.tokens());
            assertEquals(6, b.labelledTokens());
            assertFalse(b.sequenceLabels());
        }
    }

    @Test
    void leftPaddingAndClassIds() {
        try (NDManager m = NDManager.newBaseManager()) {
            Batch b = new Collator(0, true).collate(m, List.of(Example.classified(new int[] {5}, 2),
                    Example.classified(new int[] {6, 7, 8}, 0)));
            assertArrayEquals(new long[] {0, 0, 5, 6, 7, 8}, b.inputIds().toLongArray());
            assertArrayEquals(new long[] {0, 0, 1, 1, 1, 1}, b.attentionMask().toLongArray());
            assertEquals(new Shape(2), b.labels().getShape());
            assertArrayEquals(new long[] {2, 0}, b.labels().toLongArray());
            assertTrue(b.sequenceLabels());
            assertEquals(4, b.tokens());
            assertEquals(0, b.labelledTokens());
        }
    }

    @Test
    void mixedBatchIsAnError() {
        try (NDManager m = NDManager.newBaseManager()) {
            Collator c = new Collator();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> c.collate(m,
                    List.of(Example.classified(new int[] {1}, 0), Example.tokens(2))));
            assertEquals("example 1 of the batch mixes class ids with per-token labels", e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> c.collate(m, List.of()));
        }
    }
}
