package io.github.peft4j.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Decode sessions: driven by hand they give the generator's tokens; each owns its cache (freed on close); the
 * {@link LanguageModel} interface suffices for models not backed by a {@code TransformerModel}; a session's
 * {@link CallContext} reaches every forward call.
 */
class DecodeSessionTest {
    private static final int[][] PROMPTS = {{47, 83, 38, 53, 76, 116, 24, 121}, {15, 49, 23, 105, 26}, {7}};

    private static Supplier<TransformerModel> tiny(String arch) {
        return "gpt2".equals(arch) ? TinyModels::gpt2 : TinyModels::llama;
    }

    private static GenerationConfig noEos(int n) {
        return GenerationConfig.builder().maxNewTokens(n).eosTokenIds().padTokenId(0).build();
    }

    /** PROMPTS left padded with 0: {ids, mask}. */
    private static long[][][] padded(int[][] prompts) {
        int len = Arrays.stream(prompts).mapToInt(p -> p.length).max().orElseThrow();
        long[][] ids = new long[prompts.length][len];
        long[][] mask = new long[prompts.length][len];
        for (int r = 0; r < prompts.length; r++) {
            int off = len - prompts[r].length;
            for (int j = 0; j < prompts[r].length; j++) {
                ids[r][off + j] = prompts[r][j];
                mask[r][off + j] = 1;
            }
        }
        return new long[][][] {ids, mask};
    }

    /** Greedy decoding by hand: start, then next with each row's argmax (torch's argmax over the logits). */
    private static int[][] greedyByHand(DecodeSession s, long[][] ids, long[][] mask, int n, List<float[]> logitsOut) {
        int b = ids.length;
        int[][] out = new int[b][n];
        long[] tok = null;
        for (int t = 0; t < n; t++) {
            try (NDScope scope = new NDScope()) {
                NDArray logits = t == 0 ? s.start(ids, mask) : s.next(tok);
                assertEquals(new Shape(b, 128), logits.getShape());
                assertEquals(DataType.FLOAT32, logits.getDataType());
                if (logitsOut != null) {
                    logitsOut.add(logits.toFloatArray());
                }
                tok = logits.argMax(1).toType(DataType.INT64, false).toLongArray();
            }
            for (int r = 0; r < b; r++) {
                out[r][t] = (int) tok[r];
            }
        }
        return out;
    }

    @ParameterizedTest
    @CsvSource({"llama,true", "llama,false", "gpt2,true", "gpt2,false"})
    void sessionDrivenByHandGivesTheGeneratorsGreedyTokens(String arch, boolean cache) {
        try (TransformerModel model = tiny(arch).get()) {
            int[][] want = Generator.of(model).generate(PROMPTS, noEos(10)).tokens();
            long[][][] in = padded(PROMPTS);
            int[][] got;
            try (DecodeSession s = TransformerLm.of(model).open(CallContext.NONE, cache)) {
                got = greedyByHand(s, in[0], in[1], 10, null);
            }
            System.out.printf("%s by hand (cache %s): %s%n", arch, cache, Arrays.deepToString(got));
            assertArrayEquals(want, got);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2"})
    void cachedLogitsMatchRecomputedLogits(String arch) {
        try (TransformerModel model = tiny(arch).get()) {
            long[][][] in = padded(PROMPTS);
            List<float[]> cached = new ArrayList<>();
            List<float[]> full = new ArrayList<>();
            try (DecodeSession a = TransformerLm.of(model).open(CallContext.NONE, true);
                    DecodeSession b = TransformerLm.of(model).open(CallContext.NONE, false)) {
                greedyByHand(a, in[0], in[1], 8, cached);
                greedyByHand(b, in[0], in[1], 8, full);
            }
            double max = 0;
            for (int t = 0; t < cached.size(); t++) {
                for (int i = 0; i < cached.get(t).length; i++) {
                    max = Math.max(max, Math.abs(cached.get(t)[i] - full.get(t)[i]));
                }
            }
            System.out.printf("%s session logits, cache vs recompute over 8 steps: max|diff| = %.3g%n", arch, max);
            assertTrue(max < 1e-4, "max|diff| " + max);
        }
    }

    @Test
    void twoOpenSessionsKeepTheirOwnCaches() {
        try (TransformerModel model = TinyModels.llama()) {
            LanguageModel lm = TransformerLm.of(model);
            long[][][] p0 = padded(new int[][] {PROMPTS[0]});
            long[][][] p1 = padded(new int[][] {PROMPTS[1], PROMPTS[2]});
            int n = 6;
            int[][] alone0;
            int[][] alone1;
            try (DecodeSession s = lm.open()) {
                alone0 = greedyByHand(s, p0[0], p0[1], n, null);
            }
            try (DecodeSession s = lm.open()) {
                alone1 = greedyByHand(s, p1[0], p1[1], n, null);
            }
            int[][] inter0 = new int[1][n];
            int[][] inter1 = new int[2][n];
            try (DecodeSession a = lm.open(); DecodeSession b = lm.open()) { // interleaved steps
                long[] ta = null;
                long[] tb = null;
                for (int t = 0; t < n; t++) {
                    try (NDScope scope = new NDScope()) {
                        NDArray la = t == 0 ? a.start(p0[0], p0[1]) : a.next(ta);
                        NDArray lb = t == 0 ? b.start(p1[0], p1[1]) : b.next(tb);
                        ta = la.argMax(1).toType(DataType.INT64, false).toLongArray();
                        tb = lb.argMax(1).toType(DataType.INT64, false).toLongArray();
                    }
                    inter0[0][t] = (int) ta[0];
                    inter1[0][t] = (int) tb[0];
                    inter1[1][t] = (int) tb[1];
                }
            }
            assertArrayEquals(alone0, inter0);
            assertArrayEquals(alone1, inter1);
        }
    }

    @Test
    void closeFreesTheCacheAndLogitsJoinTheCallersScope() {
        try (TransformerModel model = TinyModels.gpt2()) {
            NDManager m = model.manager();
            Generator.of(model).generate(PROMPTS, noEos(3)); // creates the cached constants once
            long[][][] in = padded(PROMPTS);
            int before = m.getManagedArrays().size();
            DecodeSession s = TransformerLm.of(model).open();
            NDArray kept;
            try (NDScope scope = new NDScope()) {
                NDArray logits = s.start(in[0], in[1]);
                kept = logits;
                assertFalse(logits.isReleased());
            }
            assertTrue(kept.isReleased(), "the logits were registered in the caller's scope and closed with it");
            int during = m.getManagedArrays().size();
            NDArray outside = s.next(new long[] {1, 2, 3}); // no scope open: the caller owns the logits
            assertFalse(outside.isReleased());
            outside.close();
            try (NDScope scope = new NDScope()) {
                s.next(new long[] {4, 5, 6});
            }
            int layers = model.numLayers();
            System.out.printf("managed arrays: %d before, %d with the session's cache, %d after two more steps%n", before,
                    during, m.getManagedArrays().size());
            assertEquals(before + 2 * layers, during, "only the cache (keys and values per layer) survives a step");
            assertEquals(during, m.getManagedArrays().size(), "each step replaces the cache");
            s.close();
            assertEquals(before, m.getManagedArrays().size(), "close frees the cache");
            s.close(); // twice is fine
            PeftException e = assertThrows(PeftException.class, () -> s.next(new long[] {1, 2, 3}));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
        }
    }

    @Test
    void badCallsAreRejected() {
        try (TransformerModel model = TinyModels.llama(); DecodeSession s = TransformerLm.of(model).open()) {
            PeftException e = assertThrows(PeftException.class, () -> s.next(new long[] {1}));
            assertTrue(e.getMessage().contains("before start"), e.getMessage());
            e = assertThrows(PeftException.class, () -> s.start(new long[][] {{1, 2, 0}}, new long[][] {{1, 1, 0}}));
            assertTrue(e.getMessage().contains("LEFT padding"), e.getMessage());
            e = assertThrows(PeftException.class, () -> s.start(new long[][] {{1, 2}, {3}}, null));
            assertTrue(e.getMessage().contains("row 1"), e.getMessage());
            e = assertThrows(PeftException.class, () -> s.start(new long[][] {{1, 2}}, new long[][] {{2, 1}}));
            assertTrue(e.getMessage().contains("attention_mask[0][0] = 2"), e.getMessage());
            try (NDScope scope = new NDScope()) {
                s.start(new long[][] {{1, 2}, {3, 4}}, null);
            }
            e = assertThrows(PeftException.class, () -> s.next(new long[] {1}));
            assertTrue(e.getMessage().contains("one token per row (2)"), e.getMessage());
            e = assertThrows(PeftException.class, () -> s.next(new long[] {1, 128}));
            assertTrue(e.getMessage().contains("token 128 for row 1"), e.getMessage());
        }
        try (TransformerModel bert = TinyModels.bert(TaskType.TOKEN_CLS)) {
            PeftException e = assertThrows(PeftException.class, () -> Generator.of(bert));
            assertTrue(e.getMessage().contains("TOKEN_CLS, not next-token logits"), e.getMessage());
        }
    }

    /** One forward call as the session handed it to the model (arrays die with the step; their shapes do not). */
    private record Call(CallContext context, long seqLen, long pastLength, boolean useCache) {}

    @Test
    void sessionContextReachesEveryForwardThroughPeftModel() {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            List<Call> calls = new ArrayList<>();
            TransformerLm lm = new TransformerLm(model, peft, in -> {
                calls.add(new Call(in.context(), in.seqLen(), in.pastLength(), in.useCache()));
                return peft.forward(in);
            });
            CallContext ctx = CallContext.rowAdapters(Collections.nCopies(PROMPTS.length, CallContext.BASE));
            int[][] plain = Generator.of(peft).generate(PROMPTS, noEos(6)).tokens();
            for (boolean cache : new boolean[] {true, false}) {
                calls.clear();
                GenerationConfig cfg = noEos(6).toBuilder().useCache(cache).build();
                int[][] got = Generator.of(lm).generate(PROMPTS, cfg, ctx).tokens();
                assertArrayEquals(plain, got, "base rows decode as without a context");
                assertEquals(6, calls.size(), "one forward per new token");
                for (int t = 0; t < calls.size(); t++) {
                    Call c = calls.get(t);
                    assertSame(ctx, c.context(), "step " + t + " carries the session's context");
                    assertEquals(cache, c.useCache());
                    if (cache) {
                        assertEquals(t == 0 ? 8 : 1, c.seqLen(), "step " + t);
                        assertEquals(t == 0 ? 0 : 8 + t - 1, c.pastLength(), "step " + t);
                    } else {
                        assertEquals(8 + t, c.seqLen(), "step " + t);
                        assertEquals(0, c.pastLength(), "step " + t);
                    }
                }
            }
            CallContext two = CallContext.rowAdapters(List.of(CallContext.BASE, CallContext.BASE));
            PeftException e = assertThrows(PeftException.class, () -> Generator.of(lm).generate(PROMPTS, noEos(2), two));
            assertTrue(e.getMessage().contains("2 row adapters") && e.getMessage().contains("3 rows"), e.getMessage());
        }
    }

    /**
     * A bigram table as a language model, with no transformer behind it: the most likely next token after
     * {@code p} is {@code (5p + 3) mod 12}; EOS 11, pad 10.
     */
    private static final class Bigram implements LanguageModel {
        private final NDManager manager;
        int opened;
        int closed;

        Bigram(NDManager manager) {
            this.manager = manager;
        }

        static int favourite(long p) {
            return (int) ((5 * p + 3) % 12);
        }

        @Override
        public int vocabSize() {
            return 12;
        }

        @Override
        public int[] eosTokenIds() {
            return new int[] {11};
        }

        @Override
        public int padTokenId() {
            return 10;
        }

        @Override
        public int bosTokenId() {
            return -1;
        }

        NDArray rows(long[] prev) {
            float[] s = new float[prev.length * 12];
            for (int r = 0; r < prev.length; r++) {
                for (int q = 0; q < 12; q++) {
                    s[r * 12 + q] = -Math.abs(q - favourite(prev[r])) - 0.01f * q;
                }
            }
            return Ops.owned(manager, s, new Shape(prev.length, 12));
        }

        @Override
        public DecodeSession open(CallContext context, boolean useCache) {
            opened++;
            return new DecodeSession() {
                @Override
                public NDArray start(long[][] inputIds, long[][] attentionMask) {
                    DecodeSession.checkBatch(inputIds, attentionMask, vocabSize());
                    return rows(Arrays.stream(inputIds).mapToLong(r -> r[r.length - 1]).toArray());
                }

                @Override
                public NDArray next(long[] tokens) {
                    return rows(tokens);
                }

                @Override
                public void close() {
                    closed++;
                }
            };
        }
    }

    @Test
    void aLanguageModelWithoutATransformerRunsThroughTheGenerator() {
        try (NDManager m = NDManager.newBaseManager()) {
            Bigram lm = new Bigram(m);
            // 5 -> 4 -> 11 (EOS); 10 -> 5 -> 4 -> 11; 7 -> 2 -> 1 -> 8 -> 7 (a cycle without EOS)
            GenerationResult r = Generator.of(lm).generate(new int[][] {{1, 5}, {2, 10}, {7}}, GenerationConfig.greedy(6));
            assertArrayEquals(new int[][] {{4, 11, 10, 10, 10, 10}, {5, 4, 11, 10, 10, 10}, {2, 1, 8, 7, 2, 1}}, r.tokens());
            assertArrayEquals(new int[] {2, 3, 6}, r.lengths());
            assertArrayEquals(new boolean[] {true, true, false}, r.stopped());
            assertEquals(10, Generator.of(lm).padId(GenerationConfig.greedy(1)), "the pad id comes from the model");
            assertEquals(1, lm.opened);
            assertEquals(1, lm.closed, "the generator closes its session");
            // stops early when every row is done: the generator asks for no more steps than it needs
            GenerationResult short1 = Generator.of(lm).generate(new int[][] {{5}}, GenerationConfig.greedy(6));
            assertArrayEquals(new int[][] {{4, 11}}, short1.tokens());
        }
    }

    /** Delegates to another model's sessions and adds {@code bias} to one token's logits (proxy-tuning's shape). */
    private record Biased(LanguageModel inner, int token, float bias) implements LanguageModel {
        @Override
        public int vocabSize() {
            return inner.vocabSize();
        }

        @Override
        public int[] eosTokenIds() {
            return inner.eosTokenIds();
        }

        @Override
        public int padTokenId() {
            return inner.padTokenId();
        }

        @Override
        public int bosTokenId() {
            return inner.bosTokenId();
        }

        NDArray shift(NDArray logits) {
            float[] b = new float[vocabSize()];
            b[token] = bias;
            return logits.add(Ops.owned(logits.getManager(), b, new Shape(b.length)));
        }

        @Override
        public DecodeSession open(CallContext context, boolean useCache) {
            DecodeSession s = inner.open(context, useCache);
            return new DecodeSession() {
                @Override
                public NDArray start(long[][] inputIds, long[][] attentionMask) {
                    return shift(s.start(inputIds, attentionMask));
                }

                @Override
                public NDArray next(long[] tokens) {
                    return shift(s.next(tokens));
                }

                @Override
                public void close() {
                    s.close();
                }
            };
        }
    }

    @Test
    void aDelegatingLanguageModelEqualsTheSameShiftAsAProcessor() {
        try (TransformerModel model = TinyModels.llama()) {
            int token = 5;
            float bias = 2.5f;
            int[][] plain = Generator.of(model).generate(PROMPTS, noEos(10)).tokens();
            int[][] wrapped = Generator.of(new Biased(TransformerLm.of(model), token, bias)).generate(PROMPTS, noEos(10)).tokens();
            int[][] processed = Generator.of(model).addProcessor((ids, scores) -> {
                float[] b = new float[128];
                b[token] = bias;
                return scores.add(Ops.owned(scores.getManager(), b, new Shape(128)));
            }).generate(PROMPTS, noEos(10)).tokens();
            System.out.printf("plain %s%nbiased %s%n", Arrays.deepToString(plain), Arrays.deepToString(wrapped));
            assertArrayEquals(processed, wrapped);
            assertFalse(Arrays.deepEquals(plain, wrapped), "the bias changes the tokens");
        }
    }
}
