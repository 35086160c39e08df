package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.peft.PeftMethods;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** JSON files larger than their limit are refused before they are read (sparse files: nothing big is written). */
class SizeLimitsTest {
    @TempDir
    Path dir;

    private Path sparse(String name, long size) throws IOException {
        Path f = dir.resolve(name);
        Files.writeString(f, "{\"model_type\": \"llama\"");
        try (RandomAccessFile r = new RandomAccessFile(f.toFile(), "rw")) {
            r.setLength(size);
        }
        return f;
    }

    @Test
    void oversizedConfigsAreRefusedWithTheirSize() throws IOException {
        long size = SizeLimits.CONFIG_JSON + 1;
        sparse("config.json", size);
        PeftException e = assertThrows(PeftException.class, () -> HfConfig.read(dir));
        assertTrue(e.getMessage().endsWith("config.json: " + size + " bytes, more than the limit of "
                + SizeLimits.CONFIG_JSON + " for this kind of file (truncated download or not the file expected?)"),
                e.getMessage());
        Path adapter = sparse("adapter_config.json", size);
        e = assertThrows(PeftException.class, () -> PeftMethods.read(adapter));
        assertTrue(e.getMessage().contains("more than the limit of " + SizeLimits.CONFIG_JSON), e.getMessage());
    }

    @Test
    void filesWithinTheLimitPass() throws IOException {
        Path f = sparse("small.json", 100);
        assertTrue(SizeLimits.check(f, 100) == f);
        assertThrows(PeftException.class, () -> SizeLimits.check(f, 99));
    }
}
