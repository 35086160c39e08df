package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Mixed-adapter batches from the command line: {@code logits --adapter a=DIR --adapter b=DIR --row-adapters a,b}
 * gives HF PEFT's {@code adapter_names=} logits, and {@code generate --row-adapters} decodes each row as alone.
 */
class MixedBatchCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String CASE = "llama_mixed_batch";

    @TempDir
    Path tmp;

    private static String f(String rel) {
        return Fixtures.dir(CASE).resolve(rel).toString();
    }

    private static String base() {
        return Fixtures.dir(Fixtures.json(CASE, "logits.json").get("base_case").asText()).resolve("base").toString();
    }

    @Test
    void logitsWithRowAdaptersEqualHfAdapterNames() throws Exception {
        JsonNode meta = Fixtures.json(CASE, "logits.json");
        long[][] mask = Fixtures.matrix(Fixtures.json(CASE, "input_ids.json").get("attention_mask"));
        for (JsonNode batch : meta.get("mixed_batches")) {
            List<String> rows = new ArrayList<>();
            batch.get("adapter_names").forEach(n -> rows.add(n.asText()));
            Path out = tmp.resolve(batch.get("key").asText() + ".json");
            CliResult r = CliResult.run("logits", "--model", base(), "--adapter", "a=" + f("a"), "--adapter", "b=" + f("b"),
                    "--row-adapters", String.join(",", rows), "--input", f("input_ids.json"), "--output", out.toString());
            assertEquals(0, r.status(), r.err());
            JsonNode got = JSON.readTree(out.toFile()).get("logits");
            JsonNode expected = meta.get(batch.get("key").asText());
            double max = 0;
            int flat = 0;
            List<Double> exp = new ArrayList<>();
            flatten(expected, exp);
            for (int b = 0; b < got.size(); b++) {
                for (int s = 0; s < got.get(b).size(); s++) {
                    JsonNode pos = got.get(b).get(s);
                    for (int v = 0; v < pos.size(); v++, flat++) {
                        if (mask[b][s] == 1) { // padding queries give implementation-defined values
                            max = Math.max(max, Math.abs(pos.get(v).asDouble() - exp.get(flat)));
                        }
                    }
                }
            }
            assertEquals(exp.size(), flat, "logits size");
            System.out.printf("parity cli %s rows %s max|diff| = %.3g%n", CASE, rows, max);
            assertTrue(max < 1e-4, rows + ": " + max);
        }
    }

    private static void flatten(JsonNode n, List<Double> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add(n.asDouble());
        }
    }

    @Test
    void generateWithRowAdaptersEqualsEachRowAlone() throws Exception {
        Path mixed = tmp.resolve("mixed.json");
        CliResult r = CliResult.run("generate", "--model", base(), "--adapter", "a=" + f("a"), "--adapter", "b=" + f("b"),
                "--row-adapters", "b," + io.github.peft4j.model.CallContext.BASE, "--input", f("input_ids.json"),
                "--greedy", "--max-new-tokens", "6", "--output", mixed.toString());
        assertEquals(0, r.status(), r.err());
        JsonNode ids = Fixtures.json(CASE, "input_ids.json");
        for (int row = 0; row < 2; row++) {
            Path in = tmp.resolve("row" + row + ".json");
            java.nio.file.Files.writeString(in, "{\"input_ids\": [" + ids.get("input_ids").get(row) + "], \"attention_mask\": ["
                    + ids.get("attention_mask").get(row) + "]}");
            Path out = tmp.resolve("alone" + row + ".json");
            List<String> args = new ArrayList<>(List.of("generate", "--model", base()));
            if (row == 0) {
                args.addAll(List.of("--adapter", "b=" + f("b")));
            }
            args.addAll(List.of("--input", in.toString(), "--greedy", "--max-new-tokens", "6", "--output", out.toString()));
            CliResult alone = CliResult.run(args.toArray(new String[0]));
            assertEquals(0, alone.status(), alone.err());
            assertEquals(JSON.readTree(out.toFile()).get("generated_ids").get(0), JSON.readTree(mixed.toFile()).get("generated_ids").get(row),
                    "row " + row);
        }
        CliResult bad = CliResult.run("generate", "--model", base(), "--adapter", "a=" + f("a"), "--row-adapters", "a,zz",
                "--input", f("input_ids.json"), "--greedy", "--output", tmp.resolve("x.json").toString());
        assertEquals(2, bad.status());
        assertTrue(bad.err().contains("'zz' is not a loaded adapter"), bad.err());
    }
}
