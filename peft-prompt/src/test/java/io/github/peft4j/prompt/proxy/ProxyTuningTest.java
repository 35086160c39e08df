package io.github.peft4j.prompt.proxy;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.ptuning.PromptEncoderConfig;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Proxy-tuning against a transformers reference ({@code llama_proxy_tuning} of make_prompt_family_fixtures.py):
 * M = the tiny Llama of llama_lora, M+ = a smaller Llama with a LoRA adapter, M- = that smaller Llama; each decodes
 * with its own cache; greedy ids for alpha 1 and 0.5 equal the reference, with M+ and M- pinned on one PeftModel
 * or as two model instances; M- = M+ gives M's output alone; mismatched vocabularies and an unpinned shared model
 * are refused.
 */
class ProxyTuningTest {
    private static final String CASE = "llama_proxy_tuning";
    private static JsonNode ref;
    private static TransformerModel large;
    private static TransformerModel small;
    private static TransformerModel smallPlain;
    private static PeftModel tuned;

    @BeforeAll
    static void load() {
        ref = Fixtures.json(CASE, "proxy.json");
        Path dir = Fixtures.dir(CASE);
        large = Models.load(Fixtures.dir(ref.get("base_case").asText()).resolve("base"));
        small = Models.load(dir.resolve("small"));
        smallPlain = Models.load(dir.resolve("small"));
        tuned = PeftModel.wrap(small);
        tuned.loadAdapter(dir.resolve("small_lora"), PeftModel.DEFAULT, false);
    }

    @AfterAll
    static void close() {
        large.close();
        small.close();
        smallPlain.close();
    }

    private static int[][] ints(JsonNode n) {
        int[][] out = new int[n.size()][];
        for (int i = 0; i < out.length; i++) {
            out[i] = new int[n.get(i).size()];
            for (int j = 0; j < out[i].length; j++) {
                out[i][j] = n.get(i).get(j).asInt();
            }
        }
        return out;
    }

    private static GenerationConfig greedy() {
        return GenerationConfig.builder().maxNewTokens(ref.get("max_new_tokens").asInt()).eosTokenIds()
                .padTokenId(ref.get("pad_token_id").asInt()).build();
    }

    private static int[][] generate(LanguageModel lm, GenerationConfig config) {
        return Generator.of(lm).generate(ints(ref.get("prompts")), config).tokens();
    }

    private static String key(double alpha) {
        return alpha == 1.0 ? "1.0" : String.valueOf(alpha);
    }

    /** The first step's combined scores against the reference's, in a fresh session. */
    private static double firstScoresDiff(LanguageModel lm, double alpha) {
        JsonNode run = ref.get("runs").get(key(alpha));
        long[][] ids = Fixtures.matrix(ref.get("input_ids"));
        long[][] mask = Fixtures.matrix(ref.get("attention_mask"));
        try (NDScope scope = new NDScope(); DecodeSession s = lm.open(CallContext.NONE, true)) {
            NDArray scores = s.start(ids, mask);
            float[] got = scores.toFloatArray();
            double worst = 0;
            int v = (int) scores.getShape().get(1);
            for (int r = 0; r < ids.length; r++) {
                for (int j = 0; j < v; j++) {
                    worst = Math.max(worst, Math.abs(got[r * v + j] - run.get("first_scores").get(r).get(j).floatValue()));
                }
            }
            return worst;
        }
    }

    @Test
    void greedyIdsEqualTheReferenceWithOnePeftModelPinnedTwice() {
        for (double alpha : new double[] {1.0, 0.5}) {
            ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), PinnedAdapterLm.of(tuned, PeftModel.DEFAULT),
                    PinnedAdapterLm.base(tuned), alpha);
            int[][] expected = ints(ref.get("runs").get(key(alpha)).get("ids"));
            int[][] got = generate(proxy, greedy());
            double diff = firstScoresDiff(proxy, alpha);
            System.out.printf("parity proxy-tuning alpha %.1f (pinned on one PeftModel): first-step scores max|diff| = %.3g, "
                    + "greedy ids %s%n", alpha, diff, java.util.Arrays.deepToString(got));
            assertTrue(diff < 1e-4, "alpha " + alpha + " first-step scores differ by " + diff);
            assertArrayEquals(expected, got, "alpha " + alpha + " greedy ids");
            assertTrue(!java.util.Arrays.deepEquals(ints(ref.get("m_alone_ids")), got), "the expert changes the output");
        }
    }

    @Test
    void greedyIdsEqualTheReferenceWithTwoModelInstances() {
        for (double alpha : new double[] {1.0, 0.5}) {
            ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), LanguageModel.of(tuned),
                    LanguageModel.of(smallPlain), alpha);
            assertArrayEquals(ints(ref.get("runs").get(key(alpha)).get("ids")), generate(proxy, greedy()),
                    "alpha " + alpha + " greedy ids (separate instances)");
            // without the cache every model recomputes the whole sequence: the same ids
            assertArrayEquals(ints(ref.get("runs").get(key(alpha)).get("ids")),
                    generate(proxy, greedy().toBuilder().useCache(false).build()), "alpha " + alpha + " without cache");
        }
    }

    @Test
    void antiExpertEqualToExpertGivesTheBaseModelAlone() {
        LanguageModel expert = PinnedAdapterLm.of(tuned, PeftModel.DEFAULT);
        ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), expert, expert, 1.0);
        int[][] alone = generate(LanguageModel.of(large), greedy());
        assertArrayEquals(ints(ref.get("m_alone_ids")), alone, "M alone equals transformers' M alone");
        assertArrayEquals(alone, generate(proxy, greedy()), "M- = M+ gives M's ids");
        assertArrayEquals(ints(ref.get("m_minus_equals_m_plus_ids")), generate(proxy, greedy()));
        long[][] ids = Fixtures.matrix(ref.get("input_ids"));
        long[][] mask = Fixtures.matrix(ref.get("attention_mask"));
        try (NDScope scope = new NDScope(); DecodeSession a = proxy.open(); DecodeSession b = LanguageModel.of(large).open()) {
            double diff = Fixtures.maxAbsDiff(a.start(ids, mask), b.start(ids, mask));
            diff = Math.max(diff, Fixtures.maxAbsDiff(a.next(new long[] {5, 9}), b.next(new long[] {5, 9})));
            System.out.printf("proxy-tuning M- = M+ vs M alone scores max|diff| = %.3g%n", diff);
            assertEquals(0.0, diff, "M- = M+: the scores are M's exactly");
        }
    }

    @Test
    void samplingWithTopKOneIsGreedyAndSeededSamplingRepeats() {
        ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), PinnedAdapterLm.of(tuned, PeftModel.DEFAULT),
                PinnedAdapterLm.base(tuned), 0.5);
        GenerationConfig topOne = greedy().toBuilder().doSample(true).topK(1).seed(3).build();
        assertArrayEquals(ints(ref.get("runs").get("0.5").get("ids")), generate(proxy, topOne), "top-k 1 sampling = greedy");
        GenerationConfig sample = greedy().toBuilder().doSample(true).temperature(1.5).seed(11).build();
        int[][] first = generate(proxy, sample);
        assertArrayEquals(first, generate(proxy, sample), "the same seed samples the same tokens");
        assertNotEquals(java.util.Arrays.deepToString(ints(ref.get("runs").get("0.5").get("ids"))),
                java.util.Arrays.deepToString(first), "temperature 1.5 sampling departs from greedy");
    }

    @Test
    void mismatchedVocabulariesAreNamed() {
        try (TransformerModel other = Models.random(TinyModels.config("{\"model_type\":\"llama\",\"hidden_size\":16,"
                + "\"intermediate_size\":32,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":100,"
                + "\"max_position_embeddings\":32}"), ai.djl.Device.cpu(), ai.djl.ndarray.types.DataType.FLOAT32, null)) {
            PeftException e = assertThrows(PeftException.class, () -> ProxyTuningLm.of(LanguageModel.of(large),
                    LanguageModel.of(other), LanguageModel.of(smallPlain)));
            assertEquals("proxy-tuning: the expert (M+) has a vocabulary of 100 tokens but the base model (M) has 128; "
                    + "the three models must share one vocabulary (the same tokenizer)", e.getMessage());
            e = assertThrows(PeftException.class, () -> ProxyTuningLm.of(LanguageModel.of(large),
                    LanguageModel.of(smallPlain), LanguageModel.of(other)));
            assertTrue(e.getMessage().contains("the anti-expert (M-) has a vocabulary of 100 tokens but the base model (M) has 128"),
                    e.getMessage());
        }
    }

    @Test
    void oneUnpinnedModelInstanceForBothIsRefused() {
        PeftException e = assertThrows(PeftException.class, () -> ProxyTuningLm.of(LanguageModel.of(large),
                LanguageModel.of(tuned), LanguageModel.of(tuned.model())));
        assertTrue(e.getMessage().contains("run on one model instance") && e.getMessage().contains("PinnedAdapterLm.base"),
                e.getMessage());
        e = assertThrows(PeftException.class, () -> ProxyTuningLm.of(LanguageModel.of(large),
                PinnedAdapterLm.of(tuned, PeftModel.DEFAULT), LanguageModel.of(tuned.model())));
        assertTrue(e.getMessage().contains("run on one model instance"), e.getMessage());
        e = assertThrows(PeftException.class, () -> PinnedAdapterLm.of(tuned, "nope"));
        assertEquals("pinned adapter: no adapter named 'nope'; adapters: [default] (or __base__ for the base model)",
                e.getMessage());
        e = assertThrows(PeftException.class, () -> ProxyTuningLm.of(LanguageModel.of(large), LanguageModel.of(tuned),
                LanguageModel.of(smallPlain), Double.NaN));
        assertTrue(e.getMessage().contains("alpha must be a finite number"), e.getMessage());
        e = assertThrows(PeftException.class, () -> PinnedAdapterLm.base(tuned)
                .open(CallContext.rowAdapters(List.of("default")), true));
        assertTrue(e.getMessage().contains("runs on every row"), e.getMessage());
    }

    @Test
    void aPinnedPromptAdapterIsRefusedWithItsName() {
        try (TransformerModel model = Models.load(Fixtures.dir(CASE).resolve("small"))) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("pt", new PromptEncoderConfig().numVirtualTokens(2));
            LanguageModel pinned = PinnedAdapterLm.of(peft, "pt");
            PeftException e = assertThrows(PeftException.class, () -> generate(pinned, greedy()));
            assertTrue(e.getMessage().contains("P_TUNING adapter 'pt'"), e.getMessage());
            // as a separate instance the same prompt adapter works as an expert
            ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), LanguageModel.of(peft), LanguageModel.of(smallPlain));
            assertEquals(2, generate(proxy, greedy()).length);
        }
    }

    @Test
    void specialIdsAreTheBaseModels() {
        ProxyTuningLm proxy = ProxyTuningLm.of(LanguageModel.of(large), LanguageModel.of(tuned), LanguageModel.of(smallPlain));
        assertArrayEquals(LanguageModel.of(large).eosTokenIds(), proxy.eosTokenIds());
        assertEquals(LanguageModel.of(large).bosTokenId(), proxy.bosTokenId());
        assertEquals(128, proxy.vocabSize());
        assertEquals(1.0, proxy.alpha());
    }
}
