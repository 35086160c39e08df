package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

/** {@code peft4j train --method} for the selective methods: the loss goes down, the adapter is saved and loads back. */
class SelectiveCliTest {
    private static final Path CASE = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
    private static final ObjectMapper JSON = new ObjectMapper();

    @ParameterizedTest
    @CsvSource({"ln-tuning,LN_TUNING,", "last-k,LAST_K,", "sparse-mask,SPARSE_MASK,", "diff-pruning,DIFF_PRUNING,",
        "selective,SELECTIVE,q_proj;v_proj"})
    void trainsSavesAndLoadsBack(String method, String peftType, String targets, @TempDir Path dir) throws Exception {
        List<String> args = new ArrayList<>(List.of("train", "--model", CASE.resolve("base").toString(), "--data",
                CASE.resolve("data.jsonl").toString(), "--method", method, "--lr", "0.02", "--max-steps", "8",
                "--batch-size", "6", "--no-shuffle", "--log-every", "0", "--metrics", dir.resolve("m.jsonl").toString(),
                "--output", dir.resolve("out").toString(), "--device", "cpu"));
        if (targets != null) {
            args.addAll(List.of("--target-modules", targets.replace(';', ',')));
        }
        CliResult r = CliResult.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        List<String> lines = Files.readAllLines(dir.resolve("m.jsonl"));
        double first = JSON.readTree(lines.get(0)).get("loss").asDouble();
        double last = JSON.readTree(lines.get(lines.size() - 1)).get("loss").asDouble();
        System.out.printf("train --method %s: 8 AdamW steps, loss %.4f -> %.4f%n", method, first, last);
        assertTrue(last < first - 0.05, method + ": " + first + " -> " + last);
        JsonNode cfg = JSON.readTree(dir.resolve("out/adapter_config.json").toFile());
        assertEquals(peftType, cfg.get("peft_type").asText());
        // the saved adapter loads back for inference, unmerged and merged, with the same logits
        Files.writeString(dir.resolve("in.json"), "{\"input_ids\": [[47, 83, 38, 53, 76]]}");
        double[][] logits = new double[2][];
        for (int i = 0; i < 2; i++) {
            List<String> l = new ArrayList<>(List.of("logits", "--model", CASE.resolve("base").toString(), "--adapter",
                    dir.resolve("out").toString(), "--input", dir.resolve("in.json").toString(), "--output",
                    dir.resolve("l" + i + ".json").toString()));
            if (i == 1) {
                l.add("--merge");
            }
            CliResult lr = CliResult.run(l.toArray(String[]::new));
            assertEquals(0, lr.status(), lr.err());
            List<Double> flat = new ArrayList<>();
            JSON.readTree(dir.resolve("l" + i + ".json").toFile()).get("logits").forEach(a -> a.forEach(b -> b.forEach(
                    c -> flat.add(c.asDouble()))));
            logits[i] = flat.stream().mapToDouble(Double::doubleValue).toArray();
        }
        double worst = 0;
        for (int j = 0; j < logits[0].length; j++) {
            worst = Math.max(worst, Math.abs(logits[0][j] - logits[1][j]));
        }
        assertTrue(logits[0].length > 0 && worst < 1e-4, method + " merged vs unmerged logits " + worst);
    }
}
