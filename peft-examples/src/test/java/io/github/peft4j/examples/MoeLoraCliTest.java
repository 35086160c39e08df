package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code peft4j train --method moe-lora} with the mixture's options, then {@code peft4j logits --adapter} on the result. */
class MoeLoraCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path CASE = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");

    private static void flat(JsonNode n, List<Double> out) {
        if (n.isArray()) {
            n.forEach(c -> flat(c, out));
        } else {
            out.add(n.asDouble());
        }
    }

    @Test
    void trainsAMixtureAndLogitsLoadsIt(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("moe");
        Path metrics = dir.resolve("m.jsonl");
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data",
                CASE.resolve("data.jsonl").toString(), "--method", "moe-lora", "--num-experts", "3", "--top-k", "2",
                "--aux-loss-coef", "0.05", "--r", "2", "--alpha", "4", "--target-modules", "q_proj,v_proj", "--lr", "0.02",
                "--max-steps", "12", "--batch-size", "3", "--seed", "4", "--metrics", metrics.toString(), "--output",
                out.toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        List<String> m = Files.readAllLines(metrics);
        assertEquals(12, m.size());
        double first = JSON.readTree(m.get(0)).get("loss").asDouble();
        double last = JSON.readTree(m.get(11)).get("loss").asDouble();
        assertTrue(last < first - 0.1, "loss " + first + " -> " + last);
        JsonNode cfg = JSON.readTree(out.resolve("adapter_config.json").toFile());
        assertEquals("MOE_LORA", cfg.get("peft_type").asText());
        assertEquals(3, cfg.get("num_experts").asInt());
        assertEquals(2, cfg.get("top_k").asInt());
        assertEquals(0.05, cfg.get("router_aux_loss_coef").asDouble());
        assertTrue(r.out().contains("trainable params: "), r.out());

        Path input = Fixtures.dir("llama_lora").resolve("input_ids.json");
        Path logits = dir.resolve("logits.json");
        r = CliResult.run("logits", "--model", CASE.resolve("base").toString(), "--adapter", out.toString(), "--input",
                input.toString(), "--output", logits.toString());
        assertEquals(0, r.status(), r.err());
        List<Double> got = new ArrayList<>();
        flat(JSON.readTree(logits.toFile()).get("logits"), got);
        try (TransformerModel model = Models.load(CASE.resolve("base")); NDManager nm = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(out, PeftModel.DEFAULT, false);
            NDArray ids = Fixtures.ids(nm, "llama_lora", "input_ids");
            float[] want = peft.forward(ModelInput.of(ids, Fixtures.ids(nm, "llama_lora", "attention_mask"))).logits().toFloatArray();
            float[] base;
            try (AutoCloseable off = peft.disabled()) {
                base = peft.forward(ModelInput.of(ids, null)).logits().toFloatArray();
            }
            assertEquals(want.length, got.size());
            double d = 0;
            double fromBase = 0;
            for (int i = 0; i < want.length; i++) {
                d = Math.max(d, Math.abs(want[i] - got.get(i)));
                fromBase = Math.max(fromBase, Math.abs(base[i] - got.get(i)));
            }
            System.out.printf("moe-lora via the CLI: logits --adapter vs in-process max|diff| = %.3g (vs base %.3g)%n", d, fromBase);
            assertTrue(d < 1e-5, "logits: " + d);
            assertTrue(fromBase > 1e-3, "the trained mixture changes the logits: " + fromBase);
        }

        r = CliResult.run("logits", "--model", CASE.resolve("base").toString(), "--adapter", out.toString(), "--merge",
                "--input", input.toString(), "--output", dir.resolve("merged.json").toString());
        assertTrue(r.status() != 0, r.out());
        assertTrue(r.err().contains("cannot be merged") && r.err().contains("routing"), r.err());
    }

    @Test
    void mixtureOptionsNeedTheMixtureMethod(@TempDir Path dir) {
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data",
                CASE.resolve("data.jsonl").toString(), "--method", "lora", "--top-k", "2", "--output", dir.toString(),
                "--device", "cpu");
        assertTrue(r.status() != 0, r.out());
        assertTrue(r.err().contains("--num-experts, --top-k and --aux-loss-coef apply to a new --method moe-lora adapter"), r.err());
        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--method", "moe-lora", "--num-experts", "2", "--top-k", "3", "--target-modules", "q_proj", "--output",
                dir.toString(), "--device", "cpu");
        assertTrue(r.status() != 0, r.out());
        assertTrue(r.err().contains("'top_k' must be in [1, num_experts = 2], found 3"), r.err());
    }
}
