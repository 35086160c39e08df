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
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AdapterHub's {@code save_adapter} directories on the command line: {@code logits --adapter}, {@code info} and
 * {@code train --init-adapter} read them (fixtures of peft-adapters, made by AdapterHub 1.2.0).
 */
class AdapterHubCliTest {
    private static final Path HUB = Fixtures.root().resolve("../../../../../../peft-adapters/src/test/resources/fixtures/adapterhub")
            .normalize();
    private static final ObjectMapper JSON = new ObjectMapper();

    private static List<Double> flat(JsonNode n, List<Double> out) {
        if (n.isArray()) {
            n.forEach(c -> flat(c, out));
        } else {
            out.add(n.asDouble());
        }
        return out;
    }

    /** A UniPELT adapter in AdapterHub's default torch-pickle form ({@code pytorch_adapter.bin}). */
    @Test
    void logitsAndInfoReadAnAdapterHubUniPeltPickle(@TempDir Path dir) throws Exception {
        Path c = HUB.resolve("llama_unipelt");
        Path adapter = Files.createDirectories(dir.resolve("unipelt"));
        for (String f : List.of("adapter_config.json", "pytorch_adapter.bin")) {
            Files.copy(c.resolve("adapter").resolve(f), adapter.resolve(f));
        }
        CliResult r = CliResult.run("logits", "--model", HUB.resolve("bases/llama").toString(), "--adapter", adapter.toString(),
                "--input", c.resolve("input_ids.json").toString(), "--output", dir.resolve("l.json").toString());
        assertEquals(0, r.status(), r.err());
        List<Double> ours = flat(JSON.readTree(dir.resolve("l.json").toFile()).get("logits"), new ArrayList<>());
        List<Double> theirs = flat(JSON.readTree(c.resolve("logits.json").toFile()).get("adapter_logits"), new ArrayList<>());
        assertEquals(theirs.size(), ours.size());
        double worst = 0;
        for (int i = 0; i < ours.size(); i++) {
            worst = Math.max(worst, Math.abs(ours.get(i) - theirs.get(i)));
        }
        System.out.printf("cli logits llama_unipelt (pytorch_adapter.bin) vs AdapterHub max|diff| = %.3g%n", worst);
        assertTrue(worst < 1e-4, "max |diff| " + worst);
        CliResult info = CliResult.run("info", "--model", HUB.resolve("bases/llama").toString(), "--adapter", adapter.toString());
        assertEquals(0, info.status(), info.err());
        assertTrue(info.out().contains("adapter:        UNION from " + adapter), info.out());
    }

    /** AdapterHub's train_adapter run (seq_bn on BERT, 5 SGD steps) continued from its saved directory. */
    @Test
    void trainFromAnAdapterHubDirectoryGivesAdapterHubsLosses(@TempDir Path dir) throws Exception {
        Path c = HUB.resolve("bert_seq_bn_train");
        JsonNode data = JSON.readTree(c.resolve("data.json").toFile());
        JsonNode expected = JSON.readTree(c.resolve("losses.json").toFile());
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < data.get("labels").size(); i++) {
            lines.add("{\"input_ids\": " + data.get("input_ids").get(i) + ", \"labels\": " + data.get("labels").get(i) + "}");
        }
        Path jsonl = Files.write(dir.resolve("d.jsonl"), lines);
        CliResult r = CliResult.run("train", "--model", HUB.resolve("bases/bert").toString(), "--init-adapter",
                c.resolve("initial").toString(), "--data", jsonl.toString(), "--optimizer", "sgd", "--lr", "0.1", "--max-steps",
                "5", "--batch-size", "2", "--no-shuffle", "--clip", "0", "--log-every", "0", "--device", "cpu", "--output",
                dir.resolve("out").toString());
        assertEquals(0, r.status(), r.err());
        List<String> metrics = Files.readAllLines(dir.resolve("out/metrics.jsonl"));
        assertEquals(5, metrics.size());
        for (int i = 0; i < 5; i++) {
            assertEquals(expected.get("losses").get(i).asDouble(), JSON.readTree(metrics.get(i)).get("loss").asDouble(), 1e-4,
                    "step " + (i + 1));
        }
        assertTrue(Files.isRegularFile(dir.resolve("out/adapter_model.safetensors")));
    }
}
