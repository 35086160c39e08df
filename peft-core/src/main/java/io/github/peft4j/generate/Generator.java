package io.github.peft4j.generate;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.PromptAdapter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Autoregressive decoding of a causal language model, with or without adapters.
 *
 * <p>The prompt runs once; every later step feeds only the newest token and the key/value cache (unless
 * {@link GenerationConfig#useCache()} is off, which recomputes the whole sequence and gives the same tokens).
 * Batches are LEFT padded: the attention mask marks padding, and position ids come from the mask
 * ({@code cumsum(mask) - 1}) as in transformers' {@code generate}, so a padded row decodes as it would alone.
 * With an active prompt-learning adapter (prompt or prefix tuning) the virtual tokens are added by
 * {@link PeftModel#forward} on the first step; later steps extend the mask over them and use the default
 * positions, as HF PEFT does (it drops position ids for prompt learning).
 *
 * <p>Each step runs in an {@link NDScope}; only the cache survives it. Gradient recording is off while decoding.
 */
public final class Generator {
    private static final Logger LOG = LoggerFactory.getLogger(Generator.class);

    private final TransformerModel model;
    private final PeftModel peft;
    private final List<LogitsProcessor> extra = new ArrayList<>();

    private Generator(TransformerModel model, PeftModel peft) {
        this.model = model;
        this.peft = peft;
    }

    /**
     * @param peft a model with adapters; its active adapters apply
     * @return a generator
     */
    public static Generator of(PeftModel peft) {
        return new Generator(peft.model(), peft);
    }

    /**
     * @param model a plain causal language model
     * @return a generator
     */
    public static Generator of(TransformerModel model) {
        return new Generator(model, null);
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
        return generate(ids, mask, config);
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
        return generate(rows(inputIds), attentionMask == null ? null : rows(attentionMask), config);
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
        int b = inputIds.length;
        int len = b == 0 ? 0 : inputIds[0].length;
        if (b == 0 || len == 0) {
            throw new PeftException("generate: input_ids must be a non-empty [B, L] batch");
        }
        int vocab = model.vocabSize();
        int n = config.maxNewTokens();
        long[][] seq = new long[b][len + n];
        long[][] msk = new long[b][len + n];
        for (int r = 0; r < b; r++) {
            if (inputIds[r].length != len || (attentionMask != null && attentionMask[r].length != len)) {
                throw new PeftException("generate: row " + r + " of input_ids / attention_mask has a different length than row 0 (" + len + ")");
            }
            for (int j = 0; j < len; j++) {
                long t = inputIds[r][j];
                if (t < 0 || t >= vocab) {
                    throw new PeftException("generate: input_ids[" + r + "][" + j + "] = " + t + " is outside the vocabulary [0, " + vocab + ")");
                }
                seq[r][j] = t;
                msk[r][j] = attentionMask == null ? 1 : attentionMask[r][j];
            }
            if (msk[r][len - 1] == 0) {
                throw new PeftException("generate: row " + r + " ends with padding; generation needs LEFT padding (pad before the prompt)");
            }
        }
        int[] stops = stopIds(config);
        int pad = padId(config);
        PromptAdapter prompt = peft == null ? null : peft.activePrompt();
        int virtual = prompt == null ? 0 : prompt.numVirtualTokens();
        Function<ModelInput, ModelOutput> first = peft == null ? model::forward : peft::forward;
        List<LogitsProcessor> chain = LogitsProcessors.chain(config, extra);
        SplittableRandom rng = new SplittableRandom(config.seed());
        NDManager m = model.manager();

        int[][] out = new int[b][n];
        int[] lengths = new int[b];
        boolean[] done = new boolean[b];
        int steps = 0;
        KvCache cache = null;
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try {
            for (int t = 0; t < n; t++) {
                int cur = len + t;
                float[] scores;
                try (NDScope scope = new NDScope()) {
                    ModelOutput o;
                    if (cache == null) { // the prompt, or the whole sequence without a cache
                        NDArray ids = tensor(m, seq, 0, cur);
                        NDArray mask = tensor(m, msk, 0, cur);
                        NDArray pos = virtual > 0 ? null : positions(m, msk, 0, cur);
                        o = first.apply(new ModelInput(ids, null, mask, null, pos, null, config.useCache()));
                    } else {
                        NDArray ids = tensor(m, seq, cur - 1, cur);
                        NDArray mask = tensor(m, msk, 0, cur);
                        if (virtual > 0) {
                            mask = m.ones(new Shape(b, virtual), DataType.INT64).concat(mask, 1);
                        }
                        NDArray pos = virtual > 0 ? null : positions(m, msk, cur - 1, cur);
                        o = model.forward(new ModelInput(ids, null, mask, null, pos, cache, true));
                    }
                    if (o.logits() == null || o.logits().getShape().dimension() != 3) {
                        throw new PeftException("generate: " + model.architecture() + " is not a causal language model");
                    }
                    NDArray last = o.logits().get(new NDIndex(":, -1, :")).toType(DataType.FLOAT32, false);
                    if (config.useCache()) {
                        KvCache next = o.cache();
                        for (int l = 0; l < next.numLayers(); l++) {
                            NDScope.unregister(next.keys(l), next.values(l));
                        }
                        close(cache);
                        cache = next;
                    }
                    if (!chain.isEmpty()) {
                        NDArray ids = tensor(m, seq, 0, cur);
                        for (LogitsProcessor p : chain) {
                            last = p.process(ids, last);
                        }
                    }
                    scores = last.toFloatArray();
                }
                int v = scores.length / b;
                boolean all = true;
                for (int r = 0; r < b; r++) {
                    int tok = done[r] ? pad : (config.doSample() ? sample(scores, r * v, v, rng) : argmax(scores, r * v, v));
                    seq[r][cur] = tok;
                    msk[r][cur] = 1;
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
        } finally {
            close(cache);
            JniUtils.setGradMode(grad);
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
        int[] eos = config.eosTokenIds() != null ? config.eosTokenIds() : idsOf(model.config().json().get("eos_token_id"));
        int[] all = Arrays.copyOf(eos, eos.length + config.stopTokenIds().length);
        System.arraycopy(config.stopTokenIds(), 0, all, eos.length, config.stopTokenIds().length);
        return all;
    }

    /**
     * The id written after a row finished: the config's, else the model's {@code pad_token_id}, else its first
     * EOS id, else 0.
     *
     * @param config the settings
     * @return the pad id
     */
    public int padId(GenerationConfig config) {
        if (config.padTokenId() >= 0) {
            return config.padTokenId();
        }
        int[] pad = idsOf(model.config().json().get("pad_token_id"));
        if (pad.length > 0) {
            return pad[0];
        }
        int[] eos = config.eosTokenIds() != null ? config.eosTokenIds() : idsOf(model.config().json().get("eos_token_id"));
        return eos.length > 0 ? eos[0] : 0;
    }

    private static int[] idsOf(JsonNode n) {
        if (n == null || n.isNull()) {
            return new int[0];
        }
        if (n.isArray()) {
            int[] out = new int[n.size()];
            for (int i = 0; i < out.length; i++) {
                out[i] = n.get(i).asInt();
            }
            return out;
        }
        return new int[] {n.asInt()};
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

    /** Columns {@code from..to-1} of every row as a {@code [B, to-from]} int64 array. */
    private static NDArray tensor(NDManager m, long[][] rows, int from, int to) {
        int w = to - from;
        long[] flat = new long[rows.length * w];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(rows[r], from, flat, r * w, w);
        }
        return Ops.owned(m, flat, new Shape(rows.length, w));
    }

    /** Position ids {@code cumsum(mask) - 1} (1 at padding, as transformers) for columns {@code from..to-1}. */
    private static NDArray positions(NDManager m, long[][] mask, int from, int to) {
        int w = to - from;
        long[] flat = new long[mask.length * w];
        for (int r = 0; r < mask.length; r++) {
            long sum = 0;
            for (int j = 0; j < to; j++) {
                sum += mask[r][j];
                if (j >= from) {
                    flat[r * w + j - from] = mask[r][j] == 0 ? 1 : sum - 1;
                }
            }
        }
        return Ops.owned(m, flat, new Shape(mask.length, w));
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

    private static void close(KvCache cache) {
        if (cache != null) {
            for (int l = 0; l < cache.numLayers(); l++) {
                cache.keys(l).close();
                cache.values(l).close();
            }
        }
    }
}
