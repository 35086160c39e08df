package io.github.peft4j.examples.spam;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.io.SafeTensorsFile;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The job's model cache: a damaged cached model is imported again; a good one is reused untouched. */
class SpamJobCacheTest {
    @TempDir
    Path work;

    @Test
    void damagedModelCacheIsImportedAgainThenReused() throws IOException {
        Path dir = work.resolve("model");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"bert\"}");
        Files.writeString(dir.resolve("tokenizer.json"), "{}");
        Files.write(dir.resolve("model.safetensors"), new byte[] {8, 0, 0, 0, 0, 0, 0, 0, '{', '}'}); // truncated
        SpamJob.Settings s = new SpamJob.Settings().work(work);

        ByteArrayOutputStream first = new ByteArrayOutputStream();
        assertEquals(dir, SpamJob.prepareModel(s, new PrintStream(first, true, StandardCharsets.UTF_8)));
        String out = first.toString(StandardCharsets.UTF_8);
        assertTrue(out.contains("is unusable") && out.contains("importing again"), out);
        assertTrue(out.contains("model: imported the bundled all-MiniLM-L6-v2"), out);
        try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("model.safetensors"))) {
            assertTrue(f.names().contains("encoder.layer.5.output.dense.weight"), f.names().toString());
        }
        byte[] weights = Files.readAllBytes(dir.resolve("model.safetensors"));

        ByteArrayOutputStream second = new ByteArrayOutputStream();
        SpamJob.prepareModel(s, new PrintStream(second, true, StandardCharsets.UTF_8));
        assertEquals("model: cached in " + dir + System.lineSeparator(), second.toString(StandardCharsets.UTF_8));
        assertArrayEquals(weights, Files.readAllBytes(dir.resolve("model.safetensors")));
    }
}
