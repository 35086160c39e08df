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
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.peft.PromptAdapter;
import java.util.Arrays;
import java.util.Objects;
import java.util.function.Function;

/**
 * A local causal language model as a {@link LanguageModel}: a {@link PeftModel} (every forward of a session goes
 * through {@link PeftModel#forward}, so the active adapters, input-side ones included, and the session's
 * {@link CallContext} apply on every step) or a bare {@link TransformerModel}. Special ids come from the model's
 * config.json ({@code eos_token_id} as one id or a list, {@code pad_token_id}, {@code bos_token_id}).
 *
 * <p>A session decodes as transformers' {@code generate} does: the prompt runs once, every later step feeds only
 * the newest token and the key/value cache (or, without the cache, recomputes the whole sequence), and positions
 * come from the attention mask ({@code cumsum(mask) - 1}), so a LEFT-padded row decodes as it would alone. With
 * an active prompt-learning adapter (prompt or prefix tuning) {@link PeftModel#forward} adds the virtual tokens
 * on the first step; later steps extend the mask over them and use the default positions, as HF PEFT does (it
 * drops position ids for prompt learning). Gradient recording is off inside every call.
 */
public final class TransformerLm implements LanguageModel {
    private final TransformerModel model;
    private final PeftModel peft;
    private final Function<ModelInput, ModelOutput> forward;

    /**
     * @param model the model
     * @param peft the adapters' wrapper, or null
     * @param forward what runs one forward call ({@code peft::forward} or {@code model::forward}; tests observe it)
     */
    TransformerLm(TransformerModel model, PeftModel peft, Function<ModelInput, ModelOutput> forward) {
        this.model = Objects.requireNonNull(model, "model");
        this.peft = peft;
        this.forward = Objects.requireNonNull(forward, "forward");
        if (model.task() != TaskType.CAUSAL_LM) {
            throw new PeftException("decode: " + model.architecture() + " computes " + model.task()
                    + ", not next-token logits (CAUSAL_LM)");
        }
    }

    /**
     * @param peft a model with adapters; its active adapters apply
     * @return the language model
     */
    public static TransformerLm of(PeftModel peft) {
        return new TransformerLm(peft.model(), peft, peft::forward);
    }

    /**
     * @param model a plain causal language model
     * @return the language model
     * @throws PeftException if the model's head does not compute next-token logits
     */
    public static TransformerLm of(TransformerModel model) {
        return new TransformerLm(model, null, model::forward);
    }

    /** @return the underlying model */
    public TransformerModel model() {
        return model;
    }

    @Override
    public int vocabSize() {
        return model.vocabSize();
    }

    @Override
    public int[] eosTokenIds() {
        return idsOf(model.config().json().get("eos_token_id"));
    }

    @Override
    public int padTokenId() {
        int[] pad = idsOf(model.config().json().get("pad_token_id"));
        return pad.length > 0 ? pad[0] : -1;
    }

    @Override
    public int bosTokenId() {
        int[] bos = idsOf(model.config().json().get("bos_token_id"));
        return bos.length > 0 ? bos[0] : -1;
    }

    @Override
    public DecodeSession open(CallContext context, boolean useCache) {
        return new Session(context == null ? CallContext.NONE : context, useCache);
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

    /** A session: token ids and mask on the host, the cache on the model's device. */
    private final class Session implements DecodeSession {
        private final CallContext context;
        private final boolean useCache;
        private long[][] seq = new long[0][];
        private long[][] msk = new long[0][];
        private int len;
        private int virtual;
        private KvCache cache;
        private boolean started;
        private boolean closed;

        Session(CallContext context, boolean useCache) {
            this.context = context;
            this.useCache = useCache;
        }

        @Override
        public NDArray start(long[][] inputIds, long[][] attentionMask) {
            checkOpen();
            long[][] mask = DecodeSession.checkBatch(inputIds, attentionMask, vocabSize());
            int b = inputIds.length;
            if (context.rowAdapters() != null && context.rowAdapters().size() != b) {
                throw new PeftException("decode: the call context names " + context.rowAdapters().size()
                        + " row adapters " + context.rowAdapters() + " for a batch of " + b + " rows");
            }
            release();
            started = false;
            len = inputIds[0].length;
            seq = new long[b][];
            msk = new long[b][];
            for (int r = 0; r < b; r++) {
                seq[r] = Arrays.copyOf(inputIds[r], len + 16);
                msk[r] = Arrays.copyOf(mask[r], len + 16);
            }
            PromptAdapter prompt = peft == null ? null : peft.activePrompt();
            virtual = prompt == null ? 0 : prompt.numVirtualTokens();
            NDArray out = step();
            started = true;
            return out;
        }

        @Override
        public NDArray next(long[] tokens) {
            checkOpen();
            if (!started) {
                throw new PeftException("decode: next() before start()");
            }
            if (tokens == null || tokens.length != seq.length) {
                throw new PeftException("decode: next() needs one token per row (" + seq.length + "), got "
                        + (tokens == null ? "null" : tokens.length));
            }
            for (int r = 0; r < tokens.length; r++) {
                if (tokens[r] < 0 || tokens[r] >= vocabSize()) {
                    throw new PeftException("decode: token " + tokens[r] + " for row " + r + " is outside the vocabulary [0, " + vocabSize() + ")");
                }
            }
            if (len == seq[0].length) {
                for (int r = 0; r < seq.length; r++) {
                    seq[r] = Arrays.copyOf(seq[r], 2 * len);
                    msk[r] = Arrays.copyOf(msk[r], 2 * len);
                }
            }
            for (int r = 0; r < tokens.length; r++) {
                seq[r][len] = tokens[r];
                msk[r][len] = 1;
            }
            len++;
            return step();
        }

        /** One forward call over what is new since the cache (all of it without a cache); the logits of the last position. */
        private NDArray step() {
            boolean grad = JniUtils.isGradMode();
            JniUtils.setGradMode(false);
            NDArray last;
            try (NDScope scope = new NDScope()) {
                NDManager m = model.manager();
                ModelInput in;
                if (cache == null) { // the prompt, or the whole sequence without a cache
                    in = input(tensor(m, seq, 0, len), tensor(m, msk, 0, len), virtual > 0 ? null : positions(m, msk, 0, len), null);
                } else {
                    NDArray mask = tensor(m, msk, 0, len);
                    if (virtual > 0) { // the cache holds the virtual tokens before the sequence
                        mask = m.ones(new Shape(seq.length, virtual), DataType.INT64).concat(mask, 1);
                    }
                    in = input(tensor(m, seq, len - 1, len), mask, virtual > 0 ? null : positions(m, msk, len - 1, len), cache);
                }
                ModelOutput o = forward.apply(in);
                if (o.logits() == null || o.logits().getShape().dimension() != 3) {
                    throw new PeftException("decode: " + model.architecture() + " is not a causal language model (logits "
                            + (o.logits() == null ? "none" : o.logits().getShape()) + ", expected [B, S, vocab])");
                }
                NDArray sel = o.logits().get(new NDIndex(":, -1, :"));
                last = sel.getDataType() == DataType.FLOAT32 ? sel.duplicate() : sel.toType(DataType.FLOAT32, false);
                NDScope.unregister(last);
                if (useCache) {
                    KvCache next = o.cache();
                    for (int l = 0; l < next.numLayers(); l++) {
                        NDScope.unregister(next.keys(l), next.values(l));
                    }
                    release();
                    cache = next;
                }
            } finally {
                JniUtils.setGradMode(grad);
            }
            NDScope.register(last); // into the caller's scope, if one is open
            return last;
        }

        /** Every forward input of the session is made here, so the session's context reaches every call. */
        private ModelInput input(NDArray ids, NDArray mask, NDArray positions, KvCache past) {
            return new ModelInput(ids, null, mask, null, positions, past, useCache, context);
        }

        private void checkOpen() {
            if (closed) {
                throw new PeftException("decode: the session is closed");
            }
        }

        private void release() {
            if (cache != null) {
                for (int l = 0; l < cache.numLayers(); l++) {
                    cache.keys(l).close();
                    cache.values(l).close();
                }
                cache = null;
            }
        }

        @Override
        public void close() {
            release();
            closed = true;
        }
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
}
