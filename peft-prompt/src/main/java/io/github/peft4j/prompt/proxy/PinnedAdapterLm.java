package io.github.peft4j.prompt.proxy;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.TransformerLm;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.peft.PeftModel;
import java.util.Collections;
import java.util.Objects;

/**
 * One adapter of a {@link PeftModel} (or none: {@link CallContext#BASE}) as a {@link LanguageModel} of its own,
 * whatever adapters are active: every session runs every row with that adapter through the per-call row adapters
 * ({@code CallContext.rowAdapters(List.of(name, name, ...))}, HF PEFT's {@code adapter_names=}). So one
 * {@code PeftModel} can serve as the expert and the anti-expert of {@link ProxyTuningLm} at once, each session
 * with its own key/value cache, without switching the model's active adapter:
 *
 * <pre>{@code
 * PeftModel small = PeftModel.wrap(Models.load(smallDir));
 * small.loadAdapter(tunedDir, "tuned", false);
 * LanguageModel proxy = ProxyTuningLm.of(LanguageModel.of(large),
 *         PinnedAdapterLm.of(small, "tuned"), PinnedAdapterLm.base(small), 1.0);
 * }</pre>
 *
 * <p>Row adapters need adapters that route rows: LoRA, IA3 and {@code modules_to_save} (not merged, and no other
 * kind active), as for mixed-adapter batches; {@link PeftModel#forward} names the adapter otherwise. A
 * prompt-learning adapter (prompt tuning, P-tuning, prefix tuning) acts on the whole batch: use two model instances
 * (the small model loaded twice, one with the adapter) instead.
 */
public final class PinnedAdapterLm implements LanguageModel {
    private final PeftModel peft;
    private final String adapter;
    private final LanguageModel lm;

    private PinnedAdapterLm(PeftModel peft, String adapter) {
        this.peft = Objects.requireNonNull(peft, "peft");
        this.adapter = Objects.requireNonNull(adapter, "adapter");
        if (!CallContext.BASE.equals(adapter) && !peft.adapterNames().contains(adapter)) {
            throw new PeftException("pinned adapter: no adapter named '" + adapter + "'; adapters: "
                    + peft.adapterNames() + " (or " + CallContext.BASE + " for the base model)");
        }
        this.lm = TransformerLm.of(peft);
    }

    /**
     * @param peft the model with adapters
     * @param adapter the adapter every row runs with ({@link CallContext#BASE} for none)
     * @return the language model
     * @throws PeftException if the model has no such adapter or is not a causal LM
     */
    public static PinnedAdapterLm of(PeftModel peft, String adapter) {
        return new PinnedAdapterLm(peft, adapter);
    }

    /**
     * @param peft the model with adapters
     * @return its base model without any adapter, as a language model
     */
    public static PinnedAdapterLm base(PeftModel peft) {
        return new PinnedAdapterLm(peft, CallContext.BASE);
    }

    /** @return the model */
    public PeftModel peft() {
        return peft;
    }

    /** @return the adapter every row runs with ({@link CallContext#BASE} for none) */
    public String adapter() {
        return adapter;
    }

    @Override
    public int vocabSize() {
        return lm.vocabSize();
    }

    @Override
    public int[] eosTokenIds() {
        return lm.eosTokenIds();
    }

    @Override
    public int padTokenId() {
        return lm.padTokenId();
    }

    @Override
    public int bosTokenId() {
        return lm.bosTokenId();
    }

    /**
     * @param context must carry no row adapters (the pinned adapter is this model's)
     * @param useCache decode over the key/value cache
     * @return a session running the pinned adapter on every row
     */
    @Override
    public DecodeSession open(CallContext context, boolean useCache) {
        if (context != null && context.rowAdapters() != null) {
            throw new PeftException("pinned adapter '" + adapter + "' runs on every row; a call context with row adapters "
                    + context.rowAdapters() + " does not apply to it");
        }
        return new Session(useCache);
    }

    @Override
    public String toString() {
        return "PinnedAdapterLm{" + adapter + "}";
    }

    /** Opens the underlying session when the batch size is known (the row-adapter list has one name per row). */
    private final class Session implements DecodeSession {
        private final boolean useCache;
        private DecodeSession inner;
        private boolean closed;

        Session(boolean useCache) {
            this.useCache = useCache;
        }

        @Override
        public NDArray start(long[][] inputIds, long[][] attentionMask) {
            if (closed) {
                throw new PeftException("decode: the session is closed");
            }
            int rows = inputIds == null ? 0 : inputIds.length;
            if (inner != null) {
                inner.close();
            }
            inner = lm.open(CallContext.rowAdapters(Collections.nCopies(Math.max(rows, 1), adapter)), useCache);
            return inner.start(inputIds, attentionMask);
        }

        @Override
        public NDArray next(long[] tokens) {
            if (closed) {
                throw new PeftException("decode: the session is closed");
            }
            if (inner == null) {
                throw new PeftException("decode: next() before start()");
            }
            return inner.next(tokens);
        }

        @Override
        public void close() {
            if (inner != null) {
                inner.close();
                inner = null;
            }
            closed = true;
        }
    }
}
