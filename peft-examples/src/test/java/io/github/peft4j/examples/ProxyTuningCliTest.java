package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Proxy-tuning from the command line: {@code generate --expert DIR --expert-adapter DIR --anti-expert DIR --alpha A}
 * gives the greedy ids of the reference made with transformers (three tiny Llamas, each with its own cache).
 */
class ProxyTuningCliTest {
    private static final String CASE = "llama_proxy_tuning";

    @TempDir
    Path tmp;

    @Test
    void greedyIdsEqualTheTransformersReferenceForBothAlphas() throws Exception {
        JsonNode ref = Fixtures.json(CASE, "proxy.json");
        Path in = tmp.resolve("in.json");
        Files.writeString(in, "{\"input_ids\": " + ref.get("input_ids") + ", \"attention_mask\": " + ref.get("attention_mask") + "}");
        String base = Fixtures.dir(ref.get("base_case").asText()).resolve("base").toString();
        String small = Fixtures.dir(CASE).resolve("small").toString();
        for (String alpha : new String[] {"1.0", "0.5"}) {
            Path out = tmp.resolve("out" + alpha + ".json");
            CliResult r = CliResult.run("generate", "--model", base, "--expert", small, "--expert-adapter",
                    Fixtures.dir(CASE).resolve("small_lora").toString(), "--anti-expert", small, "--alpha", alpha,
                    "--input", in.toString(), "--greedy", "--max-new-tokens", ref.get("max_new_tokens").asText(),
                    "--output", out.toString());
            assertEquals(0, r.status(), r.err());
            assertEquals(ref.get("runs").get(alpha).get("ids"), new ObjectMapper().readTree(out.toFile()).get("generated_ids"),
                    "alpha " + alpha);
        }
        CliResult half = CliResult.run("generate", "--model", base, "--expert", small, "--input", in.toString(), "--greedy",
                "--output", tmp.resolve("x.json").toString());
        assertEquals(2, half.status());
        assertTrue(half.err().contains("needs both --expert and --anti-expert"), half.err());
    }
}
