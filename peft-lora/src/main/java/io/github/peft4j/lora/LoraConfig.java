package io.github.peft4j.lora;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * HF PEFT's {@code LoraConfig} ({@code peft_type} LORA): {@code y = base(x) + B(A(dropout(x))) * s} with
 * {@code s = lora_alpha / r}, or {@code lora_alpha / sqrt(r)} with {@code use_rslora}; per-module rank and
 * alpha through {@code rank_pattern} / {@code alpha_pattern} (keys matched as {@code (.*\.)?(key)$}). Targets may be
 * linear and Conv1D layers and embeddings ({@link LoraEmbeddingLayer}); {@code use_dora} makes the adapter DoRA
 * ({@link io.github.peft4j.lora.dora.DoraMagnitude}).
 *
 * <pre>{@code
 * LoraConfig c = new LoraConfig().r(8).loraAlpha(16).loraDropout(0.05);
 * c.targetModules("q_proj", "v_proj");
 * }</pre>
 */
public class LoraConfig extends TargetedConfig {
    /** HF's default rank. */
    public static final int DEFAULT_R = 8;
    private int r = DEFAULT_R;
    private Number loraAlpha = 8;
    private double loraDropout;
    private boolean fanInFanOut;
    private String bias = "none";
    private boolean useRslora;
    private Object initLoraWeights = Boolean.TRUE;
    private Map<String, Integer> rankPattern = new LinkedHashMap<>();
    private Map<String, Number> alphaPattern = new LinkedHashMap<>();
    private boolean useDora;

    /** A config with HF's defaults (r 8, alpha 8, no dropout). */
    public LoraConfig() {
        super("LORA");
    }

    /** @return the rank */
    public int r() {
        return r;
    }

    /**
     * @param r the rank (positive)
     * @return this
     */
    public LoraConfig r(int r) {
        this.r = r;
        return this;
    }

    /** @return {@code lora_alpha} */
    public double loraAlpha() {
        return loraAlpha.doubleValue();
    }

    /**
     * @param alpha {@code lora_alpha}
     * @return this
     */
    public LoraConfig loraAlpha(Number alpha) {
        this.loraAlpha = alpha;
        return this;
    }

    /** @return the dropout probability on the adapter branch input */
    public double loraDropout() {
        return loraDropout;
    }

    /**
     * @param p dropout probability in [0, 1)
     * @return this
     */
    public LoraConfig loraDropout(double p) {
        this.loraDropout = p;
        return this;
    }

    /** @return {@code fan_in_fan_out} as configured (the layer's own layout is what is used) */
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    /**
     * @param on whether the targets store weights {@code (in, out)} (GPT-2 Conv1D)
     * @return this
     */
    public LoraConfig fanInFanOut(boolean on) {
        this.fanInFanOut = on;
        return this;
    }

    /** @return whether rsLoRA scaling {@code alpha / sqrt(r)} is used */
    public boolean useRslora() {
        return useRslora;
    }

    /**
     * @param on rsLoRA scaling
     * @return this
     */
    public LoraConfig useRslora(boolean on) {
        this.useRslora = on;
        return this;
    }

    /** @return {@code init_lora_weights}: true (Kaiming A, zero B), false (both random), or "gaussian" */
    public Object initLoraWeights() {
        return initLoraWeights;
    }

    /**
     * @param init true, false or "gaussian"
     * @return this
     */
    public LoraConfig initLoraWeights(Object init) {
        this.initLoraWeights = init;
        return this;
    }

    /** @return {@code use_dora}: whether the adapter is DoRA (a magnitude vector per adapted layer) */
    public boolean useDora() {
        return useDora;
    }

    /**
     * @param on {@code use_dora}: weight-decomposed LoRA (HF PEFT's DoRA)
     * @return this
     */
    public LoraConfig useDora(boolean on) {
        this.useDora = on;
        return this;
    }

    /** @return per-module ranks */
    public Map<String, Integer> rankPattern() {
        return rankPattern;
    }

    /**
     * @param pattern module-name pattern to rank
     * @return this
     */
    public LoraConfig rankPattern(Map<String, Integer> pattern) {
        this.rankPattern = new LinkedHashMap<>(pattern);
        return this;
    }

    /** @return per-module alphas */
    public Map<String, Number> alphaPattern() {
        return alphaPattern;
    }

    /**
     * @param pattern module-name pattern to alpha
     * @return this
     */
    public LoraConfig alphaPattern(Map<String, Number> pattern) {
        this.alphaPattern = new LinkedHashMap<>(pattern);
        return this;
    }

    /**
     * @param targets module names or dotted suffixes
     * @return this
     */
    @Override
    public LoraConfig targetModules(String... targets) {
        super.targetModules(targets);
        return this;
    }

    /**
     * The rank of one module.
     *
     * @param path the module path
     * @return {@code rank_pattern}'s value for it, else {@code r}
     */
    public int rankFor(String path) {
        return patternValue(rankPattern, path, r);
    }

    /**
     * The scale of one module's update.
     *
     * @param path the module path
     * @return {@code alpha / r} or {@code alpha / sqrt(r)}
     */
    public double scalingFor(String path) {
        int rank = rankFor(path);
        double alpha = patternValue(alphaPattern, path, loraAlpha).doubleValue();
        return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
    }

    void expandTargets(List<String> leafNames) {
        targetModules = ModuleSpec.names(leafNames);
    }

    @Override
    public void validate(String where) {
        if (r <= 0) {
            throw new PeftException(where + ": 'r' must be a positive integer, found " + r);
        }
        rankPattern.forEach((k, v) -> {
            if (v == null || v <= 0) {
                throw new PeftException(where + ": rank_pattern['" + k + "'] must be a positive integer, found " + v);
            }
        });
        if (loraDropout < 0 || loraDropout >= 1) {
            throw new PeftException(where + ": 'lora_dropout' must be in [0, 1), found " + loraDropout);
        }
        if (!"none".equals(bias)) {
            throw new PeftException(where + ": 'bias' = \"" + bias + "\" is not supported; use \"none\" (train biases with the BITFIT method)");
        }
        if (!(Boolean.TRUE.equals(initLoraWeights) || Boolean.FALSE.equals(initLoraWeights) || "gaussian".equals(initLoraWeights))) {
            throw new PeftException(where + ": 'init_lora_weights' = " + initLoraWeights
                    + " is not supported; use true, false or \"gaussian\"");
        }
    }
}
