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

    /** The 4-bit configs: NF4 bytes per weight as bitsandbytes stores them, and a step with checkpointing. */
    @Test
    void qloraConfigsReportTheirBaseBytes() throws Exception {
        String out = run(0, "bench", "--shape", "llama-tiny", "--config", "qlora-gc,qlora-nodq,lora", "--steps", "1",
                "--warmup", "0", "--json")[0];
        String[] lines = out.strip().split("\n");
        assertEquals(3, lines.length, out);
        ObjectMapper json = new ObjectMapper();
        JsonNode dq = json.readTree(lines[0]);
        JsonNode nodq = json.readTree(lines[1]);
        JsonNode dense = json.readTree(lines[2]);
        assertEquals("qlora-gc", dq.get("config").asText());
        // llama-tiny's linear layers but lm_head: 2 layers x (4 x 64 x 64 + 3 x 64 x 256) weights
        long weights = 2L * (4 * 64 * 64 + 3 * 64 * 256);
        assertEquals(weights, dq.get("quantised_weights").asLong());
        // blocks of 64: 4 bits + 8 bits of absmax code per 64 values + the fp32 nested absmax and offset per tensor
        assertEquals(4.5, nodq.get("quant_bits_per_weight").asDouble(), 1e-9);
        assertTrue(dq.get("quant_bits_per_weight").asDouble() > 4.125 && dq.get("quant_bits_per_weight").asDouble() < 4.14,
                lines[0]);
        assertEquals(0, dense.get("quantised_weights").asLong());
        assertTrue(dq.get("base_mb").asDouble() < dense.get("base_mb").asDouble(), out);
        assertEquals(Math.log(128), dq.get("last_loss").asDouble(), 0.5, lines[0]);
    }

    @Test
    void badOptionsExitWithStatus2() {
        assertTrue(run(2, "bench", "--shape", "gpt3")[1].contains("unknown --shape 'gpt3'"));
        assertTrue(run(2, "bench", "--shape", "gpt2-tiny", "--steps", "0")[1].contains("--steps must be an integer >= 1"));
        assertTrue(run(2, "bench", "--shape", "gpt2-tiny", "--config", "qlora")[1].contains("needs a Llama shape"));
    }
}
