package io.github.peft4j.generate;

import io.github.peft4j.PeftException;
import java.util.Arrays;

/**
 * How {@link Generator} decodes. Greedy unless {@code doSample}; sampling applies, in Hugging Face's order,
 * the repetition penalty, then temperature, top-k and top-p, and draws from a {@link java.util.SplittableRandom}
 * seeded with {@code seed}, so a seed reproduces the same tokens. The repetition penalty also applies to greedy
 * decoding. Generation stops for a row at its first stop token (the model's EOS ids unless {@code eosTokenIds}
 * is given, plus {@code stopTokenIds}); finished rows are filled with {@code padTokenId}.
 *
 * @param maxNewTokens the most new tokens per row (at least 1)
 * @param doSample sample instead of taking the most likely token
 * @param temperature divides the scores before sampling (positive; 1 = off)
 * @param topK keep the k most likely tokens when sampling (0 = off)
 * @param topP keep the smallest set of tokens whose probability reaches p when sampling (1 = off)
 * @param seed the sampling seed
 * @param repetitionPenalty HF's repetition penalty (1 = off; above 1 discourages tokens already in the sequence)
 * @param eosTokenIds end-of-sequence ids, or null to take the model's ({@link LanguageModel#eosTokenIds()}; config.json for a local model)
 * @param stopTokenIds further ids that end a row (may be empty)
 * @param padTokenId the id written after a row finished, or -1 to take it from the model (pad, else the first EOS, else 0)
 * @param useCache decode incrementally over the key/value cache (false recomputes the whole sequence each step)
 */
public record GenerationConfig(int maxNewTokens, boolean doSample, double temperature, int topK, double topP, long seed,
        double repetitionPenalty, int[] eosTokenIds, int[] stopTokenIds, int padTokenId, boolean useCache) {

    /** Validates the settings. */
    public GenerationConfig {
        if (maxNewTokens < 1) {
            throw new PeftException("generation: max_new_tokens must be at least 1, got " + maxNewTokens);
        }
        if (!(temperature > 0) || Double.isInfinite(temperature)) {
            throw new PeftException("generation: temperature must be a positive number, got " + temperature);
        }
        if (topK < 0) {
            throw new PeftException("generation: top_k must be 0 (off) or positive, got " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new PeftException("generation: top_p must be in (0, 1], got " + topP);
        }
        if (!(repetitionPenalty > 0) || Double.isInfinite(repetitionPenalty)) {
            throw new PeftException("generation: repetition_penalty must be a positive number, got " + repetitionPenalty);
        }
        eosTokenIds = eosTokenIds == null ? null : eosTokenIds.clone();
        stopTokenIds = stopTokenIds == null ? new int[0] : stopTokenIds.clone();
    }

    /** @return a builder with greedy decoding of 20 new tokens over the cache */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * @param maxNewTokens the most new tokens
     * @return greedy decoding with the model's EOS
     */
    public static GenerationConfig greedy(int maxNewTokens) {
        return builder().maxNewTokens(maxNewTokens).build();
    }

    /** @return a builder holding these settings */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.maxNewTokens = maxNewTokens;
        b.doSample = doSample;
        b.temperature = temperature;
        b.topK = topK;
        b.topP = topP;
        b.seed = seed;
        b.repetitionPenalty = repetitionPenalty;
        b.eos = eosTokenIds;
        b.stop = stopTokenIds;
        b.pad = padTokenId;
        b.useCache = useCache;
        return b;
    }

    @Override
    public String toString() {
        return "GenerationConfig[maxNewTokens=" + maxNewTokens + ", doSample=" + doSample + ", temperature=" + temperature
                + ", topK=" + topK + ", topP=" + topP + ", seed=" + seed + ", repetitionPenalty=" + repetitionPenalty
                + ", eos=" + (eosTokenIds == null ? "from config" : Arrays.toString(eosTokenIds)) + ", stop="
                + Arrays.toString(stopTokenIds) + ", pad=" + (padTokenId < 0 ? "from config" : padTokenId)
                + ", useCache=" + useCache + "]";
    }

    /** Builds a {@link GenerationConfig}; unset values are greedy, 20 tokens, no penalty, cache on. */
    public static final class Builder {
        private int maxNewTokens = 20;
        private boolean doSample;
        private double temperature = 1.0;
        private int topK;
        private double topP = 1.0;
        private long seed;
        private double repetitionPenalty = 1.0;
        private int[] eos;
        private int[] stop = new int[0];
        private int pad = -1;
        private boolean useCache = true;

        private Builder() {}

        /** @param n the most new tokens @return this */
        public Builder maxNewTokens(int n) {
            maxNewTokens = n;
            return this;
        }

        /** @return this, set to greedy decoding */
        public Builder greedy() {
            doSample = false;
            return this;
        }

        /** @param on sample instead of greedy @return this */
        public Builder doSample(boolean on) {
            doSample = on;
            return this;
        }

        /** @param t the sampling temperature @return this */
        public Builder temperature(double t) {
            temperature = t;
            return this;
        }

        /** @param k top-k (0 = off) @return this */
        public Builder topK(int k) {
            topK = k;
            return this;
        }

        /** @param p top-p (1 = off) @return this */
        public Builder topP(double p) {
            topP = p;
            return this;
        }

        /** @param s the sampling seed @return this */
        public Builder seed(long s) {
            seed = s;
            return this;
        }

        /** @param p the repetition penalty (1 = off) @return this */
        public Builder repetitionPenalty(double p) {
            repetitionPenalty = p;
            return this;
        }

        /** @param ids end-of-sequence ids replacing the config's (empty: none) @return this */
        public Builder eosTokenIds(int... ids) {
            eos = ids;
            return this;
        }

        /** @param ids further stop ids @return this */
        public Builder stopTokenIds(int... ids) {
            stop = ids;
            return this;
        }

        /** @param id the pad id for finished rows @return this */
        public Builder padTokenId(int id) {
            pad = id;
            return this;
        }

        /** @param on decode over the key/value cache @return this */
        public Builder useCache(boolean on) {
            useCache = on;
            return this;
        }

        /** @return the validated config */
        public GenerationConfig build() {
            return new GenerationConfig(maxNewTokens, doSample, temperature, topK, topP, seed, repetitionPenalty, eos, stop,
                    pad, useCache);
        }
    }
}
