package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code peft4j train --fp16} on the CPU: fp16 compute with fp32 LoRA weights tracks the fp32 (HF PEFT) losses. */
class TrainFp16CliTest {
    private static final Path CASE = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
    /** Largest relative difference to HF's fp32 losses measured: 2e-5; the bound leaves room. */
    private static final double RTOL = 1e-2;

    @Test
    void fp16SgdStepsOnTheCpuTrackTheFp32Losses(@TempDir Path dir) throws Exception {
        ObjectMapper json = new ObjectMapper();
        JsonNode expected = json.readTree(CASE.resolve("losses.json").toFile());
        Path metrics = dir.resolve("m.jsonl");
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--init-adapter",
                CASE.resolve("adapter").toString(), "--data", CASE.resolve("data.jsonl").toString(), "--optimizer", "sgd",
                "--lr", "0.1", "--max-steps", "5", "--batch-size", "2", "--no-shuffle", "--clip", "0.6", "--metrics",
                metrics.toString(), "--output", dir.resolve("out").toString(), "--device", "cpu", "--fp16");
        assertEquals(0, r.status(), r.err());
        List<String> lines = Files.readAllLines(metrics);
        assertEquals(5, lines.size());
        double worst = 0;
        StringBuilder got = new StringBuilder();
        for (int i = 0; i < 5; i++) {
            double want = expected.get("losses").get(i).asDouble();
            double loss = json.readTree(lines.get(i)).get("loss").asDouble();
            got.append(i == 0 ? "" : ", ").append(loss);
            double rel = Math.abs(loss - want) / want;
            worst = Math.max(worst, rel);
            assertTrue(rel < RTOL, "step " + (i + 1) + ": fp16 " + loss + " vs HF fp32 " + want);
        }
        // the saved adapter is fp32 and moved away from the initial one
        double moved = 0;
        try (NDManager m = NDManager.newBaseManager();
                SafeTensorsFile init = SafeTensorsFile.open(CASE.resolve("adapter/adapter_model.safetensors"));
                SafeTensorsFile out = SafeTensorsFile.open(dir.resolve("out/adapter_model.safetensors"))) {
            for (String k : init.names()) {
                assertEquals("F32", out.info(k).dtype().safetensorsName(), k);
                moved = Math.max(moved, init.load(k, m).sub(out.load(k, m)).abs().max().getFloat());
            }
        }
        assertTrue(moved > 1e-3, "the fp16 run moved the adapter by at most " + moved);
        System.out.printf("cli train --fp16 (CPU), 5 SGD steps: losses [%s] max rel diff to HF fp32 %.2e (bound %.0e); "
                + "adapter moved %.3e%n", got, worst, RTOL, moved);
    }
}
