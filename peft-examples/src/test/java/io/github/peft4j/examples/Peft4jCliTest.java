package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The CLI reproduces HF's logits from files and rejects bad input with one clear line. */
class Peft4jCliTest {
    @TempDir
    Path tmp;

    private double compare(Path output, String name, String file, String key) throws Exception {
        JsonNode json = new ObjectMapper().readTree(output.toFile());
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray expected = Fixtures.logits(m, name, file, key);
            long[] shape = new long[json.get("shape").size()];
            for (int i = 0; i < shape.length; i++) {
                shape[i] = json.get("shape").get(i).asLong();
            }
            java.util.List<Float> flat = new java.util.ArrayList<>();
            flatten(json.get("logits"), flat);
            float[] data = new float[flat.size()];
            for (int i = 0; i < data.length; i++) {
                data[i] = flat.get(i);
            }
            return Fixtures.maxAbsDiff(m.create(data, new Shape(shape)), expected);
        }
    }

    private static void flatten(JsonNode n, java.util.List<Float> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add(n.floatValue());
        }
    }

    @Test
    void logitsWithAdapterAndMergeMatchHf() throws Exception {
        Path dir = Fixtures.dir("llama_lora");
        String[] common = {"--model", dir.resolve("base").toString(), "--input", dir.resolve("input_ids.json").toString()};
        Path base = tmp.resolve("base.json");
        assertEquals(0, CliResult.run(concat(new String[] {"logits"}, common, "--output", base.toString())).status());
        assertTrue(compare(base, "llama_lora", "logits.json", "base_logits") < 1e-4);
        Path adapted = tmp.resolve("adapter.json");
        CliResult r = CliResult.run(concat(new String[] {"logits"}, common, "--adapter", dir.resolve("adapter").toString(), "--output", adapted.toString()));
        assertEquals(0, r.status(), r.err());
        assertTrue(compare(adapted, "llama_lora", "logits.json", "adapter_logits") < 1e-4);
        Path merged = tmp.resolve("merged.json");
        assertEquals(0, CliResult.run(concat(new String[] {"logits"}, common, "--adapter", dir.resolve("adapter").toString(), "--merge",
                "--output", merged.toString())).status());
        assertTrue(compare(merged, "llama_lora", "merged_logits.json", "merged_logits") < 1e-4);
    }

    @Test
    void bertSequenceClassificationShape() throws Exception {
        Path dir = Fixtures.dir("bert_lora");
        Path out = tmp.resolve("o.json");
        CliResult r = CliResult.run("logits", "--model", dir.resolve("base").toString(), "--adapter", dir.resolve("adapter").toString(),
                "--input", dir.resolve("input_ids.json").toString(), "--output", out.toString());
        assertEquals(0, r.status(), r.err());
        assertEquals("[2,2]", new ObjectMapper().readTree(out.toFile()).get("shape").toString());
        assertTrue(compare(out, "bert_lora", "logits.json", "adapter_logits") < 1e-4);
    }

    @Test
    void infoPrintsTheTrainableReport() {
        Path dir = Fixtures.dir("gpt2_lora");
        CliResult r = CliResult.run("info", "--model", dir.resolve("base").toString(), "--adapter", dir.resolve("adapter").toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("GPT2LMHeadModel"), r.out());
        assertTrue(r.out().contains("trainable params: 0 || all params: "), r.out());
        assertTrue(r.out().contains("LORA"), r.out());
    }

    @Test
    void badInputGivesOneClearLine() throws Exception {
        Path dir = Fixtures.dir("llama_lora");
        String model = dir.resolve("base").toString();
        Path out = tmp.resolve("x.json");
        Path bad = tmp.resolve("bad.json");
        Files.writeString(bad, "{\"input_ids\": [[1, 2, 300]]}");
        CliResult r = CliResult.run("logits", "--model", model, "--input", bad.toString(), "--output", out.toString());
        assertEquals(2, r.status());
        assertTrue(r.err().contains("input_ids[0][2] = 300 is outside the model's vocabulary [0, 128)"), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());

        Files.writeString(bad, "{\"input_ids\": [[1, 2], [3]]}");
        r = CliResult.run("logits", "--model", model, "--input", bad.toString(), "--output", out.toString());
        assertTrue(r.err().contains("input_ids[1] has 1 entries, row 0 has 2"), r.err());

        Files.writeString(bad, "{\"input_ids\": [[1, 2]");
        r = CliResult.run("logits", "--model", model, "--input", bad.toString(), "--output", out.toString());
        assertTrue(r.err().contains("malformed JSON"), r.err());

        r = CliResult.run("logits", "--model", tmp.resolve("nope").toString(), "--input", bad.toString(), "--output", out.toString());
        assertTrue(r.err().contains("no such directory"), r.err());

        // a Llama adapter on GPT-2: its targets do not exist there
        r = CliResult.run("logits", "--model", Fixtures.dir("gpt2_lora").resolve("base").toString(), "--adapter",
                dir.resolve("adapter").toString(), "--input", dir.resolve("input_ids.json").toString(), "--output", out.toString());
        assertEquals(2, r.status());
        assertTrue(r.err().contains("target_modules entry") && r.err().contains("GPT2LMHeadModel"), r.err());
        assertTrue(!Files.exists(out), "nothing written on failure");

        r = CliResult.run("frobnicate");
        assertEquals(2, r.status());
        assertTrue(r.err().contains("unknown command 'frobnicate'"), r.err());
    }

    private static String[] concat(String[] a, String[] b, String... c) {
        String[] out = new String[a.length + b.length + c.length];
        System.arraycopy(a, 0, out, 0, a.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        System.arraycopy(c, 0, out, a.length + b.length, c.length);
        return out;
    }
}
