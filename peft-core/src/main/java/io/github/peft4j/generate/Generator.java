package io.github.peft4j.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.SplittableRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Autoregressive decoding of a causal {@link LanguageModel}, with or without adapters: greedy or sampled, with a
 * {@link LogitsProcessor} chain and stop tokens, as transformers' {@code generate}.
 *
 * <p>The generator drives one {@link DecodeSession} per call: {@link DecodeSession#start} with the prompts, then
 * {@link DecodeSession#next} with the chosen tokens, one call per new token. The session owns the key/value cache,
 * the attention mask and the positions (for a local model see {@link TransformerLm}: LEFT padding, positions from
 * the mask, prompt and prefix tuning, no cache when {@link GenerationConfig#useCache()} is off); the generator
 * owns the token choice. A {@link CallContext} given to {@code generate} reaches every forward call of the run,
 * e.g. {@code CallContext.rowAdapters(List.of("sql", "chat"))} decodes row 0 with adapter {@code sql} and row 1
 * with {@code chat} (HF PEFT's {@code generate(adapter_names=...)}).
 *
 * <p>Each step runs in an {@link NDScope}; only the session's cache survives it, and closing the session at the
 * end of the call frees the cache.
 */
public final class Generator {
    private static final Logger LOG = LoggerFactory.getLogger(Generator.class);

    private final LanguageModel lm;
    private final List<LogitsProcessor> extra = new ArrayList<>();

    private Generator(LanguageModel lm) {
        this.lm = Objects.requireNonNull(lm, "language model");
    }

    /**
     * @param peft a model with adapters; its active adapters apply, and every step goes through {@link PeftModel#forward}
     * @return a generator
     */
    public static Generator of(PeftModel peft) {
        return new Generator(TransformerLm.of(peft));
    }

    /**
     * @param model a plain causal language model
     * @return a generator
     */
    public static Generator of(TransformerModel model) {
        return new Generator(TransformerLm.of(model));
    }

    /**
     * @param lm any causal language model (a local one, a combination of models, a remote one)
     * @return a generator
     */
    public static Generator of(LanguageModel lm) {
        return new Generator(lm);
    }

    /** @return the model this generator decodes */
    public LanguageModel languageModel() {
        return lm;
    }

    /**
     * Adds a processor to every later {@code generate} call; it runs after the repetition penalty and before the
     * sampling warpers (the place for proxy-tuning).
     *
     * @param processor the processor
     * @return this
     */
    public Generator addProcessor(LogitsProcessor processor) {
        extra.add(processor);
        return this;
    }

    /**
     * Generates from prompts of different lengths, LEFT padding them with the pad id.
     *
     * @param prompts token ids per row (each non-empty)
     * @param config the settings
     * @return the new tokens
     */
    public GenerationResult generate(int[][] prompts, GenerationConfig config) {
        return generate(prompts, config, CallContext.NONE);
    }

    /**
     * Generates from prompts of different lengths, LEFT padding them with the pad id, with per-call settings.
     *
     * @param prompts token ids per row (each non-empty)
     * @param config the settings
     * @param context attached to every forward call (e.g. one adapter name per row)
     * @return the new tokens
     */
    public GenerationResult generate(int[][] prompts, GenerationConfig config, CallContext context) {
        if (prompts.length == 0) {
            throw new PeftException("generate: no prompts");
        }
        int len = 0;
        for (int i = 0; i < prompts.length; i++) {
            if (prompts[i].length == 0) {
                throw new PeftException("generate: prompt " + i + " is empty");
            }
            len = Math.max(len, prompts[i].length);
        }
        int pad = padId(config);
        long[][] ids = new long[prompts.length][len];
        long[][] mask = new long[prompts.length][len];
        for (int i = 0; i < prompts.length; i++) {
            int off = len - prompts[i].length;
            Arrays.fill(ids[i], 0, off, pad);
            for (int j = 0; j < prompts[i].length; j++) {
                ids[i][off + j] = prompts[i][j];
                mask[i][off + j] = 1;
            }
        }
        return generate(ids, mask, config, context);
    }

    /**
     * Generates from a padded batch.
     *
     * @param inputIds {@code [B, L]} int64 (LEFT padded)
     * @param attentionMask {@code [B, L]} 1 for real tokens, 0 for padding, or null (all ones)
     * @param config the settings
     * @return the new tokens
     */
    public GenerationResult generate(NDArray inputIds, NDArray attentionMask, GenerationConfig config) {
        return generate(inputIds, attentionMask, config, CallContext.NONE);
    }

    /**
     * Generates from a padded batch with per-call settings.
     *
     * @param inputIds {@code [B, L]} int64 (LEFT padded)
     * @param attentionMask {@code [B, L]} 1 for real tokens, 0 for padding, or null (all ones)
     * @param config the settings
     * @param context attached to every forward call (e.g. one adapter name per row)
     * @return the new tokens
     */
    public GenerationResult generate(NDArray inputIds, NDArray attentionMask, GenerationConfig config, CallContext context) {
        return generate(rows(inputIds), attentionMask == null ? null : rows(attentionMask), config, context);
    }

    /**
     * Generates from a padded batch held in Java arrays.
     *
     * @param inputIds {@code [B][L]} token ids (LEFT padded)
     * @param attentionMask {@code [B][L]} 1 for real tokens, 0 for padding, or null (all ones)
     * @param config the settings
     * @return the new tokens
     */
    public GenerationResult generate(long[][] inputIds, long[][] attentionMask, GenerationConfig config) {
        return generate(inputIds, attentionMask, config, CallContext.NONE);
    }

    /**
     * Generates from a padded batch held in Java arrays, with per-call settings.
     *
     * @param inputIds {@code [B][L]} token ids (LEFT padded)
     * @param attentionMask {@code [B][L]} 1 for real tokens, 0 for padding, or null (all ones)
     * @param config the settings
     * @param context attached to every forward call of the run; with row adapters, one adapter name per row
     * @return the new tokens
     */
    public GenerationResult generate(long[][] inputIds, long[][] attentionMask, GenerationConfig config, CallContext context) {
        long[][] mask = DecodeSession.checkBatch(inputIds, attentionMask, lm.vocabSize());
        int b = inputIds.length;
        int len = inputIds[0].length;
        int n = config.maxNewTokens();
        long[][] seq = new long[b][len + n];
        for (int r = 0; r < b; r++) {
            System.arraycopy(inputIds[r], 0, seq[r], 0, len);
        }
        int[] stops = stopIds(config);
        int pad = padId(config);
        List<LogitsProcessor> chain = LogitsProcessors.chain(config, extra);
        SplittableRandom rng = new SplittableRandom(config.seed());

        int[][] out = new int[b][n];
        int[] lengths = new int[b];
        boolean[] done = new boolean[b];
        long[] chosen = new long[b];
        int steps = 0;
        try (DecodeSession session = lm.open(context == null ? CallContext.NONE : context, config.useCache())) {
            for (int t = 0; t < n; t++) {
                int cur = len + t;
                float[] scores;
                try (NDScope scope = new NDScope()) {
                    NDArray last = t == 0 ? session.start(inputIds, mask) : session.next(chosen);
                    if (!chain.isEmpty()) {
                        NDArray ids = tensor(last.getManager(), seq, cur);
                        for (LogitsProcessor p : chain) {
                            last = p.process(ids, last);
                        }
                    }
                    scores = last.toType(DataType.FLOAT32, false).toFloatArray();
                }
                int v = scores.length / b;
                boolean all = true;
                for (int r = 0; r < b; r++) {
                    int tok = done[r] ? pad : (config.doSample() ? sample(scores, r * v, v, rng) : argmax(scores, r * v, v));
                    seq[r][cur] = tok;
                    chosen[r] = tok;
                    out[r][t] = tok;
                    if (!done[r]) {
                        lengths[r]++;
                        done[r] = contains(stops, tok);
                    }
                    all &= done[r];
                }
                steps = t + 1;
                if (all) {
                    break;
                }
            }
        }
        int[][] tokens = new int[b][];
        for (int r = 0; r < b; r++) {
            tokens[r] = Arrays.copyOf(out[r], steps);
        }
        LOG.debug("generated {} steps for {} rows ({})", steps, b, config);
        return new GenerationResult(tokens, lengths, done);
    }

    /** The stop ids: the config's EOS (or the model's) plus the extra stop ids. */
    private int[] stopIds(GenerationConfig config) {
        int[] eos = config.eosTokenIds() != null ? config.eosTokenIds() : lm.eosTokenIds();
        int[] all = Arrays.copyOf(eos, eos.length + config.stopTokenIds().length);
        System.arraycopy(config.stopTokenIds(), 0, all, eos.length, config.stopTokenIds().length);
        return all;
    }

    /**
     * The id written after a row finished: the config's, else the model's pad id, else its first EOS id (the
     * config's EOS ids if given), else 0.
     *
     * @param config the settings
     * @return the pad id
     */
    public int padId(GenerationConfig config) {
        if (config.padTokenId() >= 0) {
            return config.padTokenId();
        }
        if (lm.padTokenId() >= 0) {
            return lm.padTokenId();
        }
        int[] eos = config.eosTokenIds() != null ? config.eosTokenIds() : lm.eosTokenIds();
        return eos.length > 0 ? eos[0] : 0;
    }

    private static long[][] rows(NDArray a) {
        if (a.getShape().dimension() != 2) {
            throw new PeftException("generate: expected a [B, L] array, got " + a.getShape());
        }
        int b = (int) a.getShape().get(0);
        int l = (int) a.getShape().get(1);
        long[] flat = a.toType(DataType.INT64, false).toLongArray();
        long[][] out = new long[b][l];
        for (int r = 0; r < b; r++) {
            System.arraycopy(flat, r * l, out[r], 0, l);
        }
        return out;
    }

    /** The first {@code width} columns of every row as a {@code [B, width]} int64 array. */
    private static NDArray tensor(NDManager m, long[][] rows, int width) {
        long[] flat = new long[rows.length * width];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(rows[r], 0, flat, r * width, width);
        }
        return Ops.owned(m, flat, new Shape(rows.length, width));
    }

    /** The first index of the highest score (torch.argmax's choice among ties). */
    static int argmax(float[] s, int off, int v) {
        int best = 0;
        for (int i = 1; i < v; i++) {
            if (s[off + i] > s[off + best]) {
                best = i;
            }
        }
        return best;
    }

    /** Draws from softmax(scores) with one uniform number (inverse CDF over token ids). */
    static int sample(float[] s, int off, int v, SplittableRandom rng) {
        double[] p = LogitsProcessors.softmax(s, off, v);
        double u = rng.nextDouble();
        double cum = 0;
        int lastPositive = -1;
        for (int i = 0; i < v; i++) {
            if (p[i] > 0) {
                lastPositive = i;
                cum += p[i];
                if (u < cum) {
                    return i;
                }
            }
        }
        if (lastPositive < 0) {
            throw new PeftException("generate: every token was filtered out (all scores are -Infinity or NaN)");
        }
        return lastPositive; // rounding: u above the accumulated total
    }

    private static boolean contains(int[] a, int x) {
        for (int y : a) {
            if (y == x) {
                return true;
            }
        }
        return false;
    }
}
