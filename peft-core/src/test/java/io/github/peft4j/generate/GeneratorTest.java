package io.github.peft4j.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.util.Arrays;
import java.util.function.Supplier;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** Greedy and sampled decoding of plain models: transformers parity, cache vs recompute, padding, seeds, stops. */
class GeneratorTest {
    private static final int[][] PROMPTS = {{47, 83, 38, 53, 76, 116, 24, 121}, {15, 49, 23, 105, 26}, {7}};

    private static Supplier<TransformerModel> tiny(String arch) {
        return "gpt2".equals(arch) ? TinyModels::gpt2 : TinyModels::llama;
    }

    /** Long generation without EOS so every step counts. */
    private static GenerationConfig.Builder noEos(int n) {
        return GenerationConfig.builder().maxNewTokens(n).eosTokenIds().padTokenId(0);
    }

    static int[][] expected(JsonNode n) {
        long[][] m = Fixtures.matrix(n);
        return Arrays.stream(m).map(r -> Arrays.stream(r).mapToInt(x -> (int) x).toArray()).toArray(int[][]::new);
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_generate", "gpt2_generate"})
    void baseGreedyMatchesTransformers(String name) {
        JsonNode g = Fixtures.json(name, "generate.json");
        try (TransformerModel model = Models.load(Fixtures.dir(name).resolve("base"))) {
            GenerationConfig cfg = GenerationConfig.greedy(g.get("max_new_tokens").asInt());
            for (String prompt : new String[] {"batch", "single"}) {
                JsonNode p = g.get("prompts").get(prompt);
                GenerationResult r = Generator.of(model).generate(Fixtures.matrix(p.get("input_ids")),
                        Fixtures.matrix(p.get("attention_mask")), cfg);
                int[][] want = expected(g.get("base_" + prompt));
                System.out.printf("%s base %s: %s%n", name, prompt, Arrays.deepToString(r.tokens()));
                assertArrayEquals(want, r.tokens(), name + " base " + prompt);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_generate", "gpt2_generate"})
    void repetitionPenaltyAndTwoStopIdsMatchTransformers(String name) {
        JsonNode pen = Fixtures.json(name, "generate.json").get("penalty");
        JsonNode p = Fixtures.json(name, "generate.json").get("prompts").get("batch");
        int[] stops = new int[pen.get("eos_token_id").size()];
        for (int i = 0; i < stops.length; i++) {
            stops[i] = pen.get("eos_token_id").get(i).asInt();
        }
        try (TransformerModel model = Models.load(Fixtures.dir(name).resolve("base"))) {
            GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(pen.get("max_new_tokens").asInt())
                    .repetitionPenalty(pen.get("repetition_penalty").asDouble()).eosTokenIds(stops).build();
            GenerationResult r = Generator.of(model).generate(Fixtures.matrix(p.get("input_ids")),
                    Fixtures.matrix(p.get("attention_mask")), cfg);
            assertArrayEquals(expected(pen.get("base_batch")), r.tokens(), name + " with repetition penalty");
        }
    }

    @Test
    void llamaFixtureStopsRowAtEos() {
        JsonNode g = Fixtures.json("llama_generate", "generate.json");
        try (TransformerModel model = Models.load(Fixtures.dir("llama_generate").resolve("base"))) {
            JsonNode p = g.get("prompts").get("batch");
            GenerationResult r = Generator.of(model).generate(Fixtures.matrix(p.get("input_ids")),
                    Fixtures.matrix(p.get("attention_mask")), GenerationConfig.greedy(10));
            int eos = g.get("eos_token_id").asInt();
            int[] row = r.tokens()[1];
            assertTrue(r.stopped()[1] && !r.stopped()[0]);
            assertEquals(eos, row[r.lengths()[1] - 1]);
            for (int j = r.lengths()[1]; j < row.length; j++) {
                assertEquals(0, row[j], "finished rows are padded with pad_token_id");
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2"})
    void cacheGivesTheTokensOfFullRecompute(String arch) {
        try (TransformerModel model = tiny(arch).get()) {
            GenerationResult cached = Generator.of(model).generate(PROMPTS, noEos(12).build());
            GenerationResult full = Generator.of(model).generate(PROMPTS, noEos(12).useCache(false).build());
            assertArrayEquals(full.tokens(), cached.tokens());
            assertEquals(12, cached.tokens()[0].length);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2"})
    void leftPaddedRowsDecodeAsAlone(String arch) {
        try (TransformerModel model = tiny(arch).get()) {
            Generator gen = Generator.of(model);
            GenerationResult batch = gen.generate(PROMPTS, noEos(8).build());
            for (int i = 0; i < PROMPTS.length; i++) {
                GenerationResult alone = gen.generate(new int[][] {PROMPTS[i]}, noEos(8).build());
                assertArrayEquals(alone.tokens()[0], batch.tokens()[i], arch + " row " + i);
            }
        }
    }

    @Test
    void seededSamplingIsReproducibleAndTopKOneIsGreedy() {
        try (TransformerModel model = TinyModels.llama()) {
            Generator gen = Generator.of(model);
            GenerationConfig s1 = noEos(12).doSample(true).temperature(1.5).topK(50).topP(0.95).seed(42).build();
            int[][] a = gen.generate(PROMPTS, s1).tokens();
            int[][] b = gen.generate(PROMPTS, s1).tokens();
            int[][] c = gen.generate(PROMPTS, s1.toBuilder().seed(43).build()).tokens();
            assertArrayEquals(a, b);
            assertFalse(Arrays.deepEquals(a, c), "another seed draws other tokens");
            int[][] greedy = gen.generate(PROMPTS, noEos(12).build()).tokens();
            assertFalse(Arrays.deepEquals(a, greedy), "sampling at temperature 1.5 differs from greedy");
            int[][] k1 = gen.generate(PROMPTS, noEos(12).doSample(true).topK(1).temperature(0.7).seed(5).build()).tokens();
            assertArrayEquals(greedy, k1);
        }
    }

    @Test
    void stopTokensEndEachRowOnItsOwn() {
        try (TransformerModel model = TinyModels.gpt2()) {
            Generator gen = Generator.of(model);
            int[][] free = gen.generate(PROMPTS, noEos(10).build()).tokens();
            int stop = free[0][3];
            int first = 0;
            while (free[0][first] != stop) {
                first++;
            }
            GenerationResult r = gen.generate(PROMPTS, noEos(10).stopTokenIds(stop).padTokenId(127).build());
            assertEquals(first + 1, r.lengths()[0]);
            assertArrayEquals(Arrays.copyOf(free[0], first + 1), r.tokens(0));
            for (int i = 0; i < PROMPTS.length; i++) {
                int[] row = r.tokens()[i];
                for (int j = 0; j < row.length; j++) {
                    int want = j < r.lengths()[i] ? free[i][j] : 127;
                    assertEquals(want, row[j], "row " + i + " step " + j);
                }
                assertEquals(r.stopped()[i], r.lengths()[i] < 10 || row[9] == stop);
            }
        }
    }

    @Test
    void repetitionPenaltyChangesGreedyTokens() {
        try (TransformerModel model = TinyModels.gpt2()) {
            Generator gen = Generator.of(model);
            int[][] plain = gen.generate(PROMPTS, noEos(10).build()).tokens();
            int[][] penal = gen.generate(PROMPTS, noEos(10).repetitionPenalty(100).build()).tokens();
            assertFalse(Arrays.deepEquals(plain, penal));
            for (int[] row : penal) { // a huge penalty: no token repeats within the generated part
                assertEquals(row.length, Arrays.stream(row).distinct().count(), Arrays.toString(row));
            }
        }
    }

    @Test
    void badInputIsRejected() {
        try (TransformerModel model = TinyModels.llama()) {
            Generator gen = Generator.of(model);
            PeftException e = assertThrows(PeftException.class,
                    () -> gen.generate(new long[][] {{1, 2, 0}}, new long[][] {{1, 1, 0}}, GenerationConfig.greedy(2)));
            assertTrue(e.getMessage().contains("LEFT padding"), e.getMessage());
            e = assertThrows(PeftException.class, () -> gen.generate(new int[][] {{1, 300}}, GenerationConfig.greedy(2)));
            assertTrue(e.getMessage().contains("input_ids[0][1] = 300"), e.getMessage());
            e = assertThrows(PeftException.class, () -> GenerationConfig.builder().topP(0).build());
            assertTrue(e.getMessage().contains("top_p"), e.getMessage());
        }
    }
}
