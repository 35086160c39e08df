package io.github.peft4j.prompt.proxy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.TransformerLm;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import java.util.Objects;

/**
 * Proxy-tuning (Liu et al., 2024, "Tuning Language Models by Proxy") as a {@link LanguageModel}: a base model M is
 * steered at decoding time by the difference between a tuned small model M+ (the expert) and the same small model
 * untuned M- (the anti-expert). At every step the next-token scores are
 * <pre>
 *   s = s_M + alpha * (s_M+ - s_M-)
 * </pre>
 * on fp32 logits over the shared vocabulary; the generator then applies its usual logits processors (repetition
 * penalty, temperature, top-k, top-p) and picks greedily or samples. M needs no weights access at all: any
 * {@link LanguageModel}, a remote one included, serves as M.
 *
 * <p>A session opens one session per model, each with its own key/value cache and positions, and drives them in
 * lockstep: the prompt to all three, then every chosen token to all three. The special ids (EOS, pad, BOS) are
 * M's. A {@link CallContext} given to {@link #open} (e.g. row adapters of a multi-tenant M) goes to M's session
 * only; the expert and the anti-expert are fixed when the proxy is built.
 *
 * <p>The expert and the anti-expert are usually one small model with and without an adapter. Two ways:
 * <ul>
 *   <li>one {@link io.github.peft4j.peft.PeftModel} for both, each row pinned to its adapter by the per-call row
 *       adapters: {@code PinnedAdapterLm.of(small, "tuned")} and {@code PinnedAdapterLm.base(small)} (LoRA, IA3);
 *   <li>two model instances: {@code LanguageModel.of(smallWithAdapter)} and {@code LanguageModel.of(smallPlain)}
 *       (any method, prompt-learning ones included).
 * </ul>
 * Two sessions over one model instance without pinning would both run that model's active adapters, so
 * {@code s_M+ - s_M-} would be zero: {@link #of} refuses such a pair (passing the very same language model twice is
 * allowed: it is the explicit {@code M- = M+} case, whose output is M's alone).
 */
public final class ProxyTuningLm implements LanguageModel {
    private final LanguageModel base;
    private final LanguageModel expert;
    private final LanguageModel antiExpert;
    private final double alpha;

    private ProxyTuningLm(LanguageModel base, LanguageModel expert, LanguageModel antiExpert, double alpha) {
        this.base = Objects.requireNonNull(base, "base model (M)");
        this.expert = Objects.requireNonNull(expert, "expert (M+)");
        this.antiExpert = Objects.requireNonNull(antiExpert, "anti-expert (M-)");
        if (!Double.isFinite(alpha)) {
            throw new PeftException("proxy-tuning: alpha must be a finite number, got " + alpha);
        }
        this.alpha = alpha;
        checkVocab("expert (M+)", expert);
        checkVocab("anti-expert (M-)", antiExpert);
        checkDistinct(expert, antiExpert);
    }

    /**
     * @param base the model M whose scores are steered
     * @param expert the tuned small model M+
     * @param antiExpert the untuned small model M-
     * @param alpha the strength of the steering (1 in the paper)
     * @return the proxy-tuned model
     * @throws PeftException if the vocabularies differ, alpha is not finite, or M+ and M- are two unpinned views of
     *     one model instance
     */
    public static ProxyTuningLm of(LanguageModel base, LanguageModel expert, LanguageModel antiExpert, double alpha) {
        return new ProxyTuningLm(base, expert, antiExpert, alpha);
    }

    /**
     * @param base the model M
     * @param expert the tuned small model M+
     * @param antiExpert the untuned small model M-
     * @return the proxy-tuned model with alpha 1
     */
    public static ProxyTuningLm of(LanguageModel base, LanguageModel expert, LanguageModel antiExpert) {
        return of(base, expert, antiExpert, 1.0);
    }

    private void checkVocab(String what, LanguageModel lm) {
        if (lm.vocabSize() != base.vocabSize()) {
            throw new PeftException("proxy-tuning: the " + what + " has a vocabulary of " + lm.vocabSize()
                    + " tokens but the base model (M) has " + base.vocabSize()
                    + "; the three models must share one vocabulary (the same tokenizer)");
        }
    }

    /** The local model instance a language model runs on, or null if it is not a local one. */
    private static TransformerModel instance(LanguageModel lm) {
        if (lm instanceof PinnedAdapterLm p) {
            return p.peft().model();
        }
        if (lm instanceof TransformerLm t) {
            return t.model();
        }
        return null;
    }

    private static void checkDistinct(LanguageModel plus, LanguageModel minus) {
        if (plus == minus) {
            return;
        }
        TransformerModel a = instance(plus);
        if (a == null || a != instance(minus)) {
            return;
        }
        if (plus instanceof PinnedAdapterLm p && minus instanceof PinnedAdapterLm q) {
            if (p.peft() == q.peft()) {
                return;
            }
        }
        throw new PeftException("proxy-tuning: the expert (M+) and the anti-expert (M-) run on one model instance ("
                + a.architecture() + "), whose active adapters would act in both, so s_M+ - s_M- would be 0; pin each to "
                + "its adapter with PinnedAdapterLm.of(peft, name) and PinnedAdapterLm.base(peft) (LoRA, IA3), or load "
                + "the small model twice");
    }

    /** @return M */
    public LanguageModel base() {
        return base;
    }

    /** @return M+ */
    public LanguageModel expert() {
        return expert;
    }

    /** @return M- */
    public LanguageModel antiExpert() {
        return antiExpert;
    }

    /** @return the steering strength */
    public double alpha() {
        return alpha;
    }

    @Override
    public int vocabSize() {
        return base.vocabSize();
    }

    @Override
    public int[] eosTokenIds() {
        return base.eosTokenIds();
    }

    @Override
    public int padTokenId() {
        return base.padTokenId();
    }

    @Override
    public int bosTokenId() {
        return base.bosTokenId();
    }

    /**
     * @param context given to M's session (the expert and the anti-expert run without one)
     * @param useCache every model decodes over its own cache (false: each recomputes the whole sequence)
     * @return a session driving the three models in lockstep
     */
    @Override
    public DecodeSession open(CallContext context, boolean useCache) {
        return new Session(context == null ? CallContext.NONE : context, useCache);
    }

    @Override
    public String toString() {
        return "ProxyTuningLm{alpha=" + alpha + "}";
    }

    private final class Session implements DecodeSession {
        private final DecodeSession m;
        private final DecodeSession plus;
        private final DecodeSession minus;
        private boolean closed;

        Session(CallContext context, boolean useCache) {
            DecodeSession a = null;
            DecodeSession b = null;
            DecodeSession c;
            try {
                a = base.open(context, useCache);
                b = expert.open(CallContext.NONE, useCache);
                c = antiExpert.open(CallContext.NONE, useCache);
            } catch (RuntimeException e) {
                closeAll(a, b, null);
                throw e;
            }
            this.m = a;
            this.plus = b;
            this.minus = c;
        }

        @Override
        public NDArray start(long[][] inputIds, long[][] attentionMask) {
            checkOpen();
            NDArray out;
            try (NDScope scope = new NDScope()) {
                out = combine(m.start(inputIds, attentionMask), plus.start(inputIds, attentionMask),
                        minus.start(inputIds, attentionMask));
                NDScope.unregister(out);
            }
            NDScope.register(out);
            return out;
        }

        @Override
        public NDArray next(long[] tokens) {
            checkOpen();
            NDArray out;
            try (NDScope scope = new NDScope()) {
                out = combine(m.next(tokens), plus.next(tokens), minus.next(tokens));
                NDScope.unregister(out);
            }
            NDScope.register(out);
            return out;
        }

        /** {@code s_M + alpha (s_M+ - s_M-)} on M's device, fp32 {@code [B, V]}. */
        private NDArray combine(NDArray sm, NDArray sp, NDArray sn) {
            if (!sp.getShape().equals(sm.getShape()) || !sn.getShape().equals(sm.getShape())) {
                throw new PeftException("proxy-tuning: the models returned scores of shapes " + sm.getShape() + " (M), "
                        + sp.getShape() + " (M+), " + sn.getShape() + " (M-); expected one [B, V] shape");
            }
            NDArray d = sp.sub(sn);
            if (!d.getDevice().equals(sm.getDevice())) {
                d = d.toDevice(sm.getDevice(), false);
            }
            if (alpha != 1.0) {
                d = d.mul(Ops.scalar(d, alpha));
            }
            return sm.add(d);
        }

        private void checkOpen() {
            if (closed) {
                throw new PeftException("decode: the session is closed");
            }
        }

        @Override
        public void close() {
            closed = true;
            closeAll(m, plus, minus);
        }
    }

    private static void closeAll(DecodeSession a, DecodeSession b, DecodeSession c) {
        try {
            if (a != null) {
                a.close();
            }
        } finally {
            try {
                if (b != null) {
                    b.close();
                }
            } finally {
                if (c != null) {
                    c.close();
                }
            }
        }
    }
}
