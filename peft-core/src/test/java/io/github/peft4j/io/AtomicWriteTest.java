package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AtomicWriteTest {
    @TempDir
    Path dir;

    @Test
    void failedTensorWriteLeavesOldFileAndNoTempFiles() throws IOException {
        Path file = dir.resolve("model.safetensors");
        try (NDManager m = NDManager.newBaseManager()) {
            SafeTensorsWriter.write(file, Map.of("a", m.arange(4f)), Map.of("format", "pt"));
            byte[] before = Files.readAllBytes(file);

            NDArray closed = m.ones(new Shape(2));
            closed.close();
            PeftException e = assertThrows(PeftException.class,
                    () -> SafeTensorsWriter.write(file, Map.of("a", m.ones(new Shape(3)), "b", closed), null));
            assertTrue(e.getMessage().contains("tensor 'b' is closed"), e.getMessage());

            assertArrayEquals(before, Files.readAllBytes(file));
            assertEquals(List.of("model.safetensors"), TestFiles.list(dir));
        }
    }

    @Test
    void failureMidWriteLeavesOldFileAndNoTempFiles() throws IOException {
        Path file = dir.resolve("adapter_config.json");
        AtomicFiles.writeString(file, "{\"r\": 8}\n");
        IllegalStateException boom = new IllegalStateException("boom");
        IllegalStateException thrown = assertThrows(IllegalStateException.class, () ->
                AtomicFiles.write(file, out -> {
                    out.write(new byte[100_000]);
                    throw boom;
                }));
        assertSame(boom, thrown);
        UncheckedIOException io = assertThrows(UncheckedIOException.class, () ->
                AtomicFiles.write(file, out -> {
                    out.write(1);
                    throw new IOException("disk full");
                }));
        assertTrue(io.getMessage().contains(file.toString()) && io.getMessage().contains("disk full"));
        assertEquals("{\"r\": 8}\n", Files.readString(file));
        assertEquals(List.of("adapter_config.json"), TestFiles.list(dir));
    }

    @Test
    void writeCreatesParentsAndReplaces() throws IOException {
        Path file = dir.resolve("a/b/config.json");
        AtomicFiles.writeString(file, "one");
        AtomicFiles.writeString(file, "twö");
        assertEquals("twö", Files.readString(file));
        AtomicFiles.writeBytes(file, new byte[] {1, 2, 3});
        assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(file));
        assertEquals(List.of("config.json"), TestFiles.list(file.getParent()));
    }
}
