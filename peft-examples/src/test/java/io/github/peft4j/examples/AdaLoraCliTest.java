package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code peft4j train --init-adapter} with an HF AdaLoRA adapter (fixture {@code llama_adalora_train}, made by
 * {@code make_adalora_fixtures.py}): the trainer runs the adapter's hooks (regulariser, rank allocator), so ten AdamW
 * steps give HF PEFT's losses and the saved adapter HF's rank_pattern.
 */
class AdaLoraCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path DATA = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd/data.jsonl");

    @Test
    void tenAdamWStepsFromAnHfAdaLoraAdapterGiveHfLossesAndRankPattern(@TempDir Path dir) throws Exception {
        Path c = Fixtures.dir("llama_adalora_train");
        assertTrue(Files.isDirectory(c.resolve("init")), "fixture missing: run make_adalora_fixtures.py");
        JsonNode expected = JSON.readTree(c.resolve("train.json").toFile());
        // the fixture's records are the train-parity data, in order
        List<String> lines = Files.readAllLines(DATA);
        assertEquals(expected.get("records").size(), lines.size());
        for (int i = 0; i < lines.size(); i++) {
            assertEquals(expected.get("records").get(i), JSON.readTree(lines.get(i)), "record " + i);
        }
        Path metrics = dir.resolve("m.jsonl");
        Path out = dir.resolve("out");
        CliResult r = CliResult.run("train", "--model", Fixtures.dir("llama_lora").resolve("base").toString(),
                "--init-adapter", c.resolve("init").toString(), "--data", DATA.toString(), "--optimizer", "adamw",
                "--lr", "0.01", "--weight-decay", "0.01", "--max-steps", "10", "--batch-size", "2", "--no-shuffle",
                "--clip", "0", "--metrics", metrics.toString(), "--output", out.toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        List<String> m = Files.readAllLines(metrics);
        assertEquals(10, m.size());
        double worst = 0;
        for (int i = 0; i < 10; i++) {
            worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - JSON.readTree(m.get(i)).get("loss").asDouble()));
        }
        System.out.printf("parity llama_adalora_train via the CLI: losses max|diff| = %.2e%n", worst);
        assertTrue(worst < 1e-4, "losses: " + worst);
        JsonNode saved = JSON.readTree(out.resolve("adapter_config.json").toFile());
        JsonNode hf = JSON.readTree(c.resolve("trained/adapter_config.json").toFile());
        assertEquals("ADALORA", saved.get("peft_type").asText());
        assertEquals(hf.get("rank_pattern"), saved.get("rank_pattern"));
    }

    /** A new AdaLoRA adapter needs total_step (as in HF), which the command line has no option for: a clear error. */
    @Test
    void aNewAdaLoraAdapterFromMethodOptionsAsksForTotalStep(@TempDir Path dir) {
        CliResult r = CliResult.run("train", "--model", Fixtures.dir("llama_lora").resolve("base").toString(), "--data",
                DATA.toString(), "--method", "adalora", "--max-steps", "1", "--output", dir.resolve("o").toString(),
                "--device", "cpu");
        assertTrue(r.status() != 0, r.out());
        assertTrue(r.err().contains("'total_step' must be given and > 0"), r.err());
    }
}
