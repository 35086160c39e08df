package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code peft4j train} through {@link Peft4jCli#run}: HF PEFT loss parity, new adapters, eval, checkpoints, resume. */
class TrainCommandTest {
    private static final Path CASE = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
    private static final ObjectMapper JSON = new ObjectMapper();

    private static List<JsonNode> lines(Path file) throws Exception {
        List<JsonNode> out = new ArrayList<>();
        for (String l : Files.readAllLines(file)) {
            out.add(JSON.readTree(l));
        }
        return out;
    }

    @Test
    void sgdStepsFromAnInitialAdapterGiveHfPeftsLosses(@TempDir Path dir) throws Exception {
        JsonNode expected = JSON.readTree(CASE.resolve("losses.json").toFile());
        Path metrics = dir.resolve("m.jsonl");
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--init-adapter", CASE.resolve("adapter").toString(),
                "--data", CASE.resolve("data.jsonl").toString(), "--optimizer", "sgd", "--lr", "0.1", "--max-steps", "5",
                "--batch-size", "2", "--no-shuffle", "--clip", "0.6", "--metrics", metrics.toString(), "--output",
                dir.resolve("out").toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        List<JsonNode> m = lines(metrics);
        assertEquals(5, m.size());
        for (int i = 0; i < 5; i++) {
            assertEquals(i + 1, m.get(i).get("step").asInt());
            assertEquals(0.1, m.get(i).get("lr").asDouble(), 0);
            assertEquals(expected.get("losses").get(i).asDouble(), m.get(i).get("loss").asDouble(), 1e-4, "step " + (i + 1));
        }
        assertTrue(Files.isRegularFile(dir.resolve("out/adapter_model.safetensors")));
        assertTrue(r.out().contains("trained 5 steps"), r.out());
    }

    /** {@code --gradient-checkpointing}: the same five SGD steps still give HF PEFT's losses (recomputed blocks). */
    @Test
    void gradientCheckpointingGivesTheSameHfLosses(@TempDir Path dir) throws Exception {
        JsonNode expected = JSON.readTree(CASE.resolve("losses.json").toFile());
        Path metrics = dir.resolve("m.jsonl");
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--init-adapter", CASE.resolve("adapter").toString(),
                "--data", CASE.resolve("data.jsonl").toString(), "--optimizer", "sgd", "--lr", "0.1", "--max-steps", "5",
                "--batch-size", "2", "--no-shuffle", "--clip", "0.6", "--metrics", metrics.toString(), "--output",
                dir.resolve("out").toString(), "--gradient-checkpointing");
        assertEquals(0, r.status(), r.err());
        List<JsonNode> m = lines(metrics);
        assertEquals(5, m.size());
        for (int i = 0; i < 5; i++) {
            assertEquals(expected.get("losses").get(i).asDouble(), m.get(i).get("loss").asDouble(), 1e-4, "step " + (i + 1));
        }
    }

    /** {@code --seed} seeds the new adapter's initialisation too: the same command twice writes the same adapter. */
    @Test
    void theSameSeedTrainsTheSameAdapter(@TempDir Path dir) throws Exception {
        byte[][] out = new byte[3][];
        String[] seeds = {"7", "7", "8"};
        for (int i = 0; i < 3; i++) {
            Path o = dir.resolve("run" + i);
            CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data",
                    CASE.resolve("data.jsonl").toString(), "--method", "lora", "--r", "4", "--target-modules", "q_proj,v_proj",
                    "--lr", "0.01", "--max-steps", "2", "--batch-size", "2", "--seed", seeds[i], "--log-every", "0",
                    "--output", o.toString(), "--device", "cpu");
            assertEquals(0, r.status(), r.err());
            out[i] = Files.readAllBytes(o.resolve("adapter_model.safetensors"));
        }
        assertTrue(java.util.Arrays.equals(out[0], out[1]), "seed 7 twice: different adapters");
        assertTrue(!java.util.Arrays.equals(out[0], out[2]), "seeds 7 and 8: the same adapter");
    }

    @Test
    void newLoraAdapterWithEvalCheckpointsAndResume(@TempDir Path dir) throws Exception {
        String[] common = {"--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
            "--eval-data", CASE.resolve("data.jsonl").toString(), "--method", "lora", "--r", "4", "--alpha", "8",
            "--target-modules", "q_proj,v_proj", "--lr", "0.01", "--scheduler", "cosine", "--warmup-steps", "1",
            "--max-steps", "6", "--batch-size", "2", "--eval-every", "3", "--checkpoint-every", "2", "--seed", "5",
            "--device", "cpu"};
        List<String> full = new ArrayList<>(List.of("train", "--output", dir.resolve("a").toString()));
        full.addAll(List.of(common));
        CliResult r = CliResult.run(full.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("trainable params: 1,792 ||"), r.out());
        List<JsonNode> m = lines(dir.resolve("a/metrics.jsonl"));
        assertEquals(6, m.size());
        assertTrue(m.get(2).has("eval_loss") && m.get(2).has("eval_perplexity") && !m.get(1).has("eval_loss"));
        assertEquals(Math.exp(m.get(5).get("eval_loss").asDouble()), m.get(5).get("eval_perplexity").asDouble(), 1e-9);
        for (String f : List.of("adapter_config.json", "adapter_model.safetensors", "curves.png", "best/adapter_config.json",
                "checkpoint-4/trainer_state.json", "checkpoint-6/optimizer.safetensors")) {
            assertTrue(Files.isRegularFile(dir.resolve("a").resolve(f)), f);
        }
        List<String> resumed = new ArrayList<>(List.of("train", "--output", dir.resolve("b").toString(), "--resume",
                dir.resolve("a/checkpoint-4").toString()));
        resumed.addAll(List.of(common));
        CliResult r2 = CliResult.run(resumed.toArray(String[]::new));
        assertEquals(0, r2.status(), r2.err());
        List<JsonNode> m2 = lines(dir.resolve("b/metrics.jsonl"));
        assertEquals(2, m2.size());
        for (int i = 0; i < 2; i++) {
            assertEquals(m.get(4 + i).get("step").asInt(), m2.get(i).get("step").asInt());
            assertEquals(m.get(4 + i).get("loss").asDouble(), m2.get(i).get("loss").asDouble(), 1e-6);
        }
    }

    @Test
    void modulesToSaveAppliesToTheNewAdapterOfAnyMethod(@TempDir Path dir) throws Exception {
        Path out = dir.resolve("prompt");
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--method", "prompt-tuning", "--num-virtual-tokens", "4", "--modules-to-save", "lm_head", "--lr", "0.01",
                "--max-steps", "2", "--batch-size", "2", "--output", out.toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        // 4 virtual tokens x 64 + a whole copy of lm_head 128 x 64 (no bias)
        assertTrue(r.out().contains("trainable params: 8,448 ||"), r.out());
        assertEquals("[\"lm_head\"]", JSON.readTree(out.resolve("adapter_config.json").toFile()).get("modules_to_save").toString());
        try (SafeTensorsFile f = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
            assertEquals(List.of("base_model.lm_head.weight", "prompt_embeddings"), f.names().stream().sorted().toList());
        }

        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--method", "lora", "--target-modules", "q_proj,v_proj", "--r", "4", "--modules-to-save", "lm_head",
                "--max-steps", "1", "--batch-size", "2", "--output", dir.resolve("lora").toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        // LoRA r 4 on q_proj (64 -> 64) and v_proj (64 -> 32) in 2 layers: 2 x (4 x 128 + 4 x 96) = 1,792; + lm_head
        assertTrue(r.out().contains("trainable params: 9,984 ||"), r.out());

        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--init-adapter", CASE.resolve("adapter").toString(),
                "--data", CASE.resolve("data.jsonl").toString(), "--modules-to-save", "lm_head", "--output",
                dir.resolve("x").toString(), "--device", "cpu");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("--modules-to-save applies to a new adapter made with --method"), r.err());
        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--method", "prompt-tuning", "--num-virtual-tokens", "4", "--modules-to-save", "lm_head,,norm",
                "--output", dir.resolve("y").toString(), "--device", "cpu");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("--modules-to-save 'lm_head,,norm' has an empty name"), r.err());
    }

    @Test
    void badOptionsAreNamed(@TempDir Path dir) {
        CliResult r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--output", dir.toString(), "--method", "lora", "--target-modules", "q_proj", "--optimizer", "adam",
                "--device", "cpu");
        assertEquals(2, r.status());
        assertEquals("peft4j: train: --optimizer 'adam': expected adamw or sgd", r.err().trim());
        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--output", dir.toString(), "--device", "cpu");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("give --method (a new adapter) or --init-adapter DIR"), r.err());
        r = CliResult.run("train", "--model", CASE.resolve("base").toString(), "--data", CASE.resolve("data.jsonl").toString(),
                "--output", dir.toString(), "--method", "lora", "--target-modules", "q_proj", "--scheduler", "step",
                "--device", "cpu");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("--scheduler 'step': expected constant, linear or cosine"), r.err());
    }

    @Test
    void chatRecordsPackedIntoSequences(@TempDir Path dir) throws Exception {
        Path data = dir.resolve("chat.jsonl");
        List<String> records = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            records.add("{\"messages\": [{\"role\": \"user\", \"content\": \"hi " + i + "\"}, "
                    + "{\"role\": \"assistant\", \"content\": \"ok\"}]}");
        }
        Files.write(data, records);
        String[] common = {"train", "--model", CASE.resolve("base").toString(), "--tokenizer",
            io.github.peft4j.testing.TestTokenizers.bpe().toString(), "--data", data.toString(), "--format", "chat",
            "--method", "lora", "--r", "2", "--target-modules", "q_proj", "--lr", "0.01", "--max-steps", "2",
            "--batch-size", "2", "--device", "cpu"};
        List<String> args = new ArrayList<>(List.of(common));
        args.addAll(List.of("--pack", "--max-length", "64", "--metrics", dir.resolve("m.jsonl").toString(), "--output",
                dir.resolve("out").toString()));
        CliResult r = CliResult.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        // six short conversations fit into fewer sequences of at most 64 tokens (the model's positions)
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("6 records, (\\d+) examples").matcher(r.out());
        assertTrue(m.find(), r.out());
        int packed = Integer.parseInt(m.group(1));
        assertTrue(packed >= 1 && packed < 6, r.out());
        List<JsonNode> metrics = lines(dir.resolve("m.jsonl"));
        assertEquals(2, metrics.size());
        assertTrue(Double.isFinite(metrics.get(1).get("loss").asDouble()) && metrics.get(1).get("loss").asDouble() > 0);

        List<String> noLength = new ArrayList<>(List.of(common));
        noLength.addAll(List.of("--pack", "--output", dir.resolve("out2").toString()));
        CliResult bad = CliResult.run(noLength.toArray(String[]::new));
        assertEquals(2, bad.status());
        assertTrue(bad.err().contains("--pack needs --max-length"), bad.err());
        assertTrue(!Files.exists(dir.resolve("out2")), "nothing written on bad input");
    }
}
