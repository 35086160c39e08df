package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code peft4j train --init-adapter} from HF DoRA and embedding-LoRA adapters (fixtures of
 * {@code make_lora_family_fixtures.py}): five SGD steps give HF PEFT's losses and trained weights.
 */
class LoraFamilyCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    /** The case's base with its config overrides (dropout 0), and its records as a JSON-lines file. */
    private Path base(String name, JsonNode train) throws Exception {
        String baseCase = Fixtures.json(name, "logits.json").get("base_case").asText();
        Path src = Fixtures.dir(baseCase).resolve("base");
        ObjectNode cfg = (ObjectNode) JSON.readTree(src.resolve("config.json").toFile());
        train.get("base_config_overrides").fields().forEachRemaining(e -> cfg.set(e.getKey(), e.getValue()));
        Path dst = Files.createDirectories(tmp.resolve("base"));
        Files.writeString(dst.resolve("config.json"), cfg.toString());
        Files.copy(src.resolve("model.safetensors"), dst.resolve("model.safetensors"));
        return dst;
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_dora", "gpt2_dora", "llama_lora_embedding", "llama_dora_embedding", "gpt2_lora_embedding"})
    void fiveSgdStepsFromAnHfAdapterGiveHfLossesAndWeights(String name) throws Exception {
        JsonNode train = Fixtures.json(name, "train.json");
        Path base = base(name, train);
        Path data = tmp.resolve("data.jsonl");
        List<String> lines = new ArrayList<>();
        train.get("records").forEach(r -> lines.add(r.toString()));
        Files.write(data, lines);
        Path metrics = tmp.resolve("m.jsonl");
        Path out = tmp.resolve("out");
        CliResult r = CliResult.run("train", "--model", base.toString(), "--init-adapter",
                Fixtures.dir(name).resolve("adapter").toString(), "--data", data.toString(), "--optimizer", "sgd",
                "--lr", train.get("lr").asText(), "--max-steps", train.get("steps").asText(), "--batch-size",
                train.get("batch_size").asText(), "--no-shuffle", "--clip", train.get("max_grad_norm").asText(),
                "--metrics", metrics.toString(), "--output", out.toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        List<String> m = Files.readAllLines(metrics);
        assertEquals(train.get("steps").asInt(), m.size());
        double worst = 0;
        for (int i = 0; i < m.size(); i++) {
            worst = Math.max(worst, Math.abs(train.get("losses").get(i).asDouble() - JSON.readTree(m.get(i)).get("loss").asDouble()));
        }
        double wd = 0;
        try (NDManager nm = NDManager.newBaseManager();
                SafeTensorsFile hf = SafeTensorsFile.open(Fixtures.dir(name).resolve("trained/adapter_model.safetensors"));
                SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
            assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()));
            for (String k : hf.names()) {
                wd = Math.max(wd, Fixtures.maxAbsDiff(ours.load(k, nm), hf.load(k, nm)));
            }
        }
        System.out.printf("parity %s via the CLI (train --init-adapter, 5 SGD steps): losses max|diff| = %.2e, trained"
                + " weights max|diff| = %.2e%n", name, worst, wd);
        assertTrue(worst < 1e-4, name + " losses: " + worst);
        assertTrue(wd < 1e-4, name + " weights: " + wd);
    }
}
