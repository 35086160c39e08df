package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

/** {@code peft4j bench} runs real training steps on the tiny shapes and reports its figures (no timing asserted). */
class BenchCommandTest {
    private static String[] run(int expectedStatus, String... args) {
        CliResult r = CliResult.run(args);
        assertEquals(expectedStatus, r.status(), r.err());
        return new String[] {r.out(), r.err()};
    }

    @Test
    void tinyShapesPrintOneJsonObjectEach() throws Exception {
        String out = run(0, "bench", "--shape", "llama-tiny,gpt2-tiny", "--steps", "2", "--warmup", "1", "--json")[0];
        String[] lines = out.strip().split("\n");
        assertEquals(2, lines.length, out);
        String[] shapes = {"llama-tiny", "gpt2-tiny"};
        // LoRA r=8 on q_proj,v_proj (2 x 2 layers x (8*64 + 64*8)) and on c_attn (2 layers x (8*64 + 192*8))
        long[] trainable = {2 * 2 * (8 * 64 + 64 * 8), 2 * (8 * 64 + 192 * 8)};
        for (int i = 0; i < 2; i++) {
            JsonNode j = new ObjectMapper().readTree(lines[i]);
            assertEquals(shapes[i], j.get("shape").asText());
            assertTrue(j.get("ms_per_step").asDouble() > 0, lines[i]);
            assertTrue(j.get("tokens_per_s").asDouble() > 0, lines[i]);
            assertTrue(j.get("peak_rss_mb").asDouble() > 0, lines[i]);
            assertEquals(2, j.get("steps").asInt());
            assertEquals(trainable[i], j.get("trainable_params").asLong());
            // random tokens over a vocabulary of 128: the loss starts near ln(128) = 4.85
            assertEquals(Math.log(128), j.get("last_loss").asDouble(), 0.5, lines[i]);
        }
    }

    @Test
    void badOptionsExitWithStatus2() {
        assertTrue(run(2, "bench", "--shape", "gpt3")[1].contains("unknown --shape 'gpt3'"));
        assertTrue(run(2, "bench", "--shape", "gpt2-tiny", "--steps", "0")[1].contains("--steps must be an integer >= 1"));
    }
}
