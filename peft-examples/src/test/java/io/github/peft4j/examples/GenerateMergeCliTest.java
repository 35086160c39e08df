package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
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
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code peft4j generate} reproduces transformers' greedy ids; {@code peft4j merge} writes a checkpoint that loads. */
class GenerateMergeCliTest {
    @TempDir
    Path tmp;

    @Test
    void generateFromInputFileMatchesTransformers() throws Exception {
        Path dir = Fixtures.dir("llama_generate");
        JsonNode g = Fixtures.json("llama_generate", "generate.json");
        Path input = tmp.resolve("in.json");
        Files.writeString(input, g.get("prompts").get("batch").toString());
        Path output = tmp.resolve("out.json");
        CliResult r = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--adapter", dir.resolve("adapter").toString(),
                "--input", input.toString(), "--max-new-tokens", "10", "--greedy", "--output", output.toString());
        assertEquals(0, r.status(), r.err());
        System.out.print(r.out());
        JsonNode got = new ObjectMapper().readTree(output.toFile());
        assertEquals(g.get("adapter_batch"), got.get("generated_ids"));
        CliResult base = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--input", input.toString(),
                "--max-new-tokens", "10");
        assertEquals(0, base.status(), base.err());
        assertEquals(g.get("base_batch"), new ObjectMapper().readTree(base.out()).get("generated_ids"));
    }

    @Test
    void generateFromPromptTextDecodesTheContinuation() throws Exception {
        Path dir = Fixtures.dir("llama_generate");
        Path model = tmp.resolve("model");
        Files.createDirectories(model);
        for (Path f : new Path[] {dir.resolve("base/config.json"), dir.resolve("base/model.safetensors"),
            Fixtures.root().resolve("../tokenizers/bpe/tokenizer.json"), Fixtures.root().resolve("../tokenizers/bpe/tokenizer_config.json")}) {
            Files.copy(f, model.resolve(f.getFileName()));
        }
        String text = "Hello world";
        Path output = tmp.resolve("ids.json");
        CliResult r = CliResult.run("generate", "--model", model.toString(), "--adapter", dir.resolve("adapter").toString(),
                "--prompt", text, "--max-new-tokens", "6", "--output", output.toString());
        assertEquals(0, r.status(), r.err());
        System.out.print(r.out());
        try (io.github.peft4j.data.Tokenizer tok = io.github.peft4j.data.Tokenizer.load(model);
                TransformerModel m = Models.load(model)) {
            int[] ids = tok.encode(text, true);
            PeftModel peft = PeftModel.wrap(m);
            peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
            io.github.peft4j.generate.GenerationResult want = io.github.peft4j.generate.Generator.of(peft).generate(
                    new int[][] {ids}, io.github.peft4j.generate.GenerationConfig.builder().maxNewTokens(6)
                            .stopTokenIds(tok.eosTokenId().getAsInt()).build());
            JsonNode got = new ObjectMapper().readTree(output.toFile()).get("generated_ids").get(0);
            assertEquals(want.tokens()[0].length, got.size());
            for (int j = 0; j < got.size(); j++) {
                assertEquals(want.tokens()[0][j], got.get(j).asInt());
            }
            String[] lines = r.out().split("\n");
            assertEquals(tok.decode(want.tokens(0), true), lines[lines.length - 1]);
        }
        CliResult none = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--prompt", text);
        assertEquals(2, none.status());
        assertTrue(none.err().contains("tokenizer.json not found"), none.err());
        CliResult both = CliResult.run("generate", "--model", model.toString(), "--prompt", text, "--input", output.toString());
        assertEquals(2, both.status());
        assertTrue(both.err().contains("exactly one of --prompt TEXT and --input FILE"), both.err());
    }

    @Test
    void generateRejectsSamplingOptionsWithoutSample() {
        Path dir = Fixtures.dir("llama_generate");
        CliResult r = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--input", dir.resolve("generate.json").toString(),
                "--top-k", "5");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("--top-k only applies with --sample"), r.err());
        r = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--input", dir.resolve("generate.json").toString());
        assertEquals(2, r.status());
        assertTrue(r.err().contains("missing \"input_ids\""), r.err());
    }

    @Test
    void mergedCheckpointGivesTheAdapterLogits() throws Exception {
        Path dir = Fixtures.dir("llama_generate");
        Path out = tmp.resolve("merged");
        CliResult r = CliResult.run("merge", "--model", dir.resolve("base").toString(), "--adapter", dir.resolve("adapter").toString(),
                "--output", out.toString());
        assertEquals(0, r.status(), r.err());
        System.out.print(r.out());
        assertTrue(Files.isRegularFile(out.resolve("config.json")));
        assertTrue(Files.isRegularFile(out.resolve("model.safetensors")));
        assertTrue(Files.isRegularFile(out.resolve("generation_config.json")), "model-dir files are copied");
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(1, s.count(), "no temporary directory is left behind");
        }
        try (TransformerModel merged = Models.load(out);
                TransformerModel base = Models.load(dir.resolve("base"));
                NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(dir.resolve("adapter"), PeftModel.DEFAULT, false);
            NDArray ids = Fixtures.ids(m, "llama_lora", "input_ids");
            NDArray want = peft.forward(ModelInput.of(ids, null)).logits();
            NDArray got = merged.forward(ModelInput.of(ids, null)).logits();
            double diff = Fixtures.maxAbsDiff(got, want);
            System.out.printf("merged vs base+adapter max|diff| = %.3g%n", diff);
            assertTrue(diff < 1e-4, "max |diff| " + diff);
            assertTrue(merged.stateDict().keySet().stream().noneMatch(k -> k.contains("lora")));
        }
    }

    @Test
    void mergeNeverLeavesAHalfWrittenOutput() throws Exception {
        Path dir = Fixtures.dir("llama_generate");
        Path out = tmp.resolve("busy");
        Files.createDirectories(out);
        Files.writeString(out.resolve("keep.txt"), "mine");
        String[] args = {"merge", "--model", dir.resolve("base").toString(), "--adapter", dir.resolve("adapter").toString(),
            "--output", out.toString()};
        CliResult r = CliResult.run(args);
        assertEquals(2, r.status());
        assertTrue(r.err().contains("is not empty (use --force to replace it)"), r.err());
        assertEquals("mine", Files.readString(out.resolve("keep.txt")));

        Path prompt = Fixtures.dir("gpt2_prompt");
        Path none = tmp.resolve("none");
        r = CliResult.run("merge", "--model", prompt.resolve("base").toString(), "--adapter", prompt.resolve("adapter").toString(),
                "--output", none.toString());
        assertEquals(2, r.status());
        assertTrue(r.err().contains("cannot be merged"), r.err());
        assertFalse(Files.exists(none), "nothing is written when the merge fails");

        String[] forced = java.util.Arrays.copyOf(args, args.length + 1);
        forced[args.length] = "--force";
        r = CliResult.run(forced);
        assertEquals(0, r.status(), r.err());
        assertFalse(Files.exists(out.resolve("keep.txt")), "--force replaces the directory");
        assertTrue(Files.isRegularFile(out.resolve("model.safetensors")));
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(java.util.List.of(out), s.toList(), "no temporary or moved-aside directory is left behind");
        }
    }
}
