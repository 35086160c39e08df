package io.github.peft4j.lora.adalora;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * HF PEFT 0.21's {@code AdaLoraConfig} ({@code peft_type} ADALORA; {@code tuners/adalora/config.py}): SVD-form LoRA
 * {@code y = base(x) + dropout(x) (A ⊙ E)ᵀ Bᵀ · lora_alpha / (init_r + 1e-5)} on every target, an orthogonal
 * regulariser added to the training loss, and a rank allocator that, after each optimizer step, scores every
 * singular triplet and zeroes the least important {@code lora_E} entries down to a cubic budget schedule
 * ({@code tinit}, {@code tfinal}, {@code deltaT}, {@code total_step}, {@code target_r}); the final mask is
 * {@code rank_pattern} (module {@code <path>.lora_E} → one boolean per rank), which saving uses to cut the tensors.
 * {@code r} is ignored (as in HF); {@code init_r} is the rank built.
 *
 * <pre>{@code
 * AdaLoraConfig c = new AdaLoraConfig().initR(12).targetR(4).totalStep(1000).tinit(100).tfinal(200);
 * c.targetModules("q_proj", "v_proj");
 * }</pre>
 */
public class AdaLoraConfig extends TargetedConfig {
    /** HF's per-{@code model_type} default targets ({@code TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING}). */
    static final Map<String, List<String>> DEFAULT_TARGETS = Map.of(
            "llama", List.of("q_proj", "v_proj"),
            "qwen2", List.of("q_proj", "v_proj"),
            "gpt2", List.of("c_attn"),
            "bert", List.of("query", "value"));

    private int r = 8;
    private Number loraAlpha = 8;
    private double loraDropout;
    private boolean fanInFanOut;
    private String bias = "none";
    private Object initLoraWeights = Boolean.TRUE;
    private boolean useDora;
    private boolean useRslora;
    private int targetR = 8;
    private int initR = 12;
    private int tinit;
    private int tfinal;
    @JsonProperty("deltaT")
    private int deltaT = 1;
    private double beta1 = 0.85;
    private double beta2 = 0.85;
    private double orthRegWeight = 0.5;
    private Integer totalStep;
    private Map<String, List<Boolean>> rankPattern;

    /** A config with HF's defaults (init_r 12, target_r 8, lora_alpha 8, beta1 = beta2 = 0.85, orth_reg_weight 0.5). */
    public AdaLoraConfig() {
        super("ADALORA");
    }

    /** @return {@code init_r}: the rank every target is built with */
    public int initR() {
        return initR;
    }

    /**
     * @param r {@code init_r} (&gt;= 0)
     * @return this
     */
    public AdaLoraConfig initR(int r) {
        this.initR = r;
        return this;
    }

    /** @return {@code target_r}: the average rank per module the budget ends at */
    public int targetR() {
        return targetR;
    }

    /**
     * @param r {@code target_r} (&gt;= 0)
     * @return this
     */
    public AdaLoraConfig targetR(int r) {
        this.targetR = r;
        return this;
    }

    /** @return {@code lora_alpha} */
    public double loraAlpha() {
        return loraAlpha.doubleValue();
    }

    /**
     * @param alpha {@code lora_alpha} (the update is scaled by {@code alpha / (init_r + 1e-5)}; 0 or less means
     *     {@code init_r}, as HF)
     * @return this
     */
    public AdaLoraConfig loraAlpha(Number alpha) {
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
    public AdaLoraConfig loraDropout(double p) {
        this.loraDropout = p;
        return this;
    }

    /** @return {@code fan_in_fan_out} as configured (the layer's own layout is used) */
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    /**
     * @param on whether the targets store weights {@code (in, out)} (GPT-2 Conv1D)
     * @return this
     */
    public AdaLoraConfig fanInFanOut(boolean on) {
        this.fanInFanOut = on;
        return this;
    }

    /** @return {@code init_lora_weights}: true (E = 0, A and B ~ N(0, 0.02)) or false (all ~ N(0, 1)) */
    public boolean initLoraWeights() {
        return !Boolean.FALSE.equals(initLoraWeights);
    }

    /**
     * @param init {@code init_lora_weights}
     * @return this
     */
    public AdaLoraConfig initLoraWeights(boolean init) {
        this.initLoraWeights = init;
        return this;
    }

    /** @return {@code tinit}: steps of initial warm-up without masking */
    public int tinit() {
        return tinit;
    }

    /**
     * @param steps {@code tinit}
     * @return this
     */
    public AdaLoraConfig tinit(int steps) {
        this.tinit = steps;
        return this;
    }

    /** @return {@code tfinal}: steps of final fine-tuning with the final mask */
    public int tfinal() {
        return tfinal;
    }

    /**
     * @param steps {@code tfinal}
     * @return this
     */
    public AdaLoraConfig tfinal(int steps) {
        this.tfinal = steps;
        return this;
    }

    /** @return {@code deltaT}: mask every this many steps in the budgeting phase */
    public int deltaT() {
        return deltaT;
    }

    /**
     * @param steps {@code deltaT} (&gt;= 1)
     * @return this
     */
    public AdaLoraConfig deltaT(int steps) {
        this.deltaT = steps;
        return this;
    }

    /** @return {@code beta1}: the EMA factor of the sensitivity */
    public double beta1() {
        return beta1;
    }

    /** @return {@code beta2}: the EMA factor of the uncertainty */
    public double beta2() {
        return beta2;
    }

    /**
     * @param beta1 sensitivity EMA factor in (0, 1)
     * @param beta2 uncertainty EMA factor in (0, 1)
     * @return this
     */
    public AdaLoraConfig betas(double beta1, double beta2) {
        this.beta1 = beta1;
        this.beta2 = beta2;
        return this;
    }

    /** @return {@code orth_reg_weight}: the coefficient of the orthogonal regulariser */
    public double orthRegWeight() {
        return orthRegWeight;
    }

    /**
     * @param w {@code orth_reg_weight} (&gt;= 0)
     * @return this
     */
    public AdaLoraConfig orthRegWeight(double w) {
        this.orthRegWeight = w;
        return this;
    }

    /** @return {@code total_step}: the planned number of optimizer steps (required) */
    public Integer totalStep() {
        return totalStep;
    }

    /**
     * @param steps {@code total_step} (&gt; 0)
     * @return this
     */
    public AdaLoraConfig totalStep(int steps) {
        this.totalStep = steps;
        return this;
    }

    /** @return {@code rank_pattern}: {@code <module path>.lora_E} (HF may also write {@code ...lora_E.<adapter>}) to kept ranks, or null */
    public Map<String, List<Boolean>> rankPattern() {
        return rankPattern;
    }

    /**
     * @param pattern {@code <module path>.lora_E} to one boolean per rank (true: kept), or null
     * @return this
     */
    public AdaLoraConfig rankPattern(Map<String, List<Boolean>> pattern) {
        if (pattern == null) {
            this.rankPattern = null;
        } else {
            Map<String, List<Boolean>> copy = new LinkedHashMap<>();
            pattern.forEach((k, v) -> copy.put(k, new ArrayList<>(v)));
            this.rankPattern = copy;
        }
        return this;
    }

    /**
     * @param targets module names or dotted suffixes
     * @return this
     */
    @Override
    public AdaLoraConfig targetModules(String... targets) {
        super.targetModules(targets);
        return this;
    }

    /** The update's scale numerator: {@code lora_alpha}, or {@code init_r} when it is 0 or less (HF's rule). */
    double scalingNumerator() {
        double a = loraAlpha();
        return a > 0 ? a : initR;
    }

    void defaultTargets(String modelType) {
        if (targetModules != null) {
            return;
        }
        List<String> t = DEFAULT_TARGETS.get(modelType);
        if (t == null) {
            throw new PeftException("ADALORA: target_modules is required for model_type '" + modelType
                    + "' (defaults exist for " + new java.util.TreeSet<>(DEFAULT_TARGETS.keySet()) + ")");
        }
        targetModules = ModuleSpec.names(t);
    }

    void expandTargets(List<String> paths) {
        targetModules = ModuleSpec.names(paths);
    }

    @Override
    public void validate(String where) {
        if (initR < 0) {
            throw new PeftException(where + ": 'init_r' must be >= 0, found " + initR);
        }
        if (targetR < 0) {
            throw new PeftException(where + ": 'target_r' must be >= 0, found " + targetR);
        }
        if (totalStep == null || totalStep <= 0) {
            throw new PeftException(where + ": 'total_step' must be given and > 0 (AdaLoRA's budget schedule needs it), found "
                    + totalStep);
        }
        if (tinit < 0 || tfinal < 0) {
            throw new PeftException(where + ": 'tinit' and 'tfinal' must be >= 0, found " + tinit + " and " + tfinal);
        }
        if (tinit >= totalStep - tfinal) {
            throw new PeftException(where + ": 'tinit' (" + tinit + ") must be < total_step - tfinal (" + totalStep + " - "
                    + tfinal + "): the schedule leaves no budgeting phase");
        }
        if (deltaT < 1) {
            throw new PeftException(where + ": 'deltaT' must be >= 1, found " + deltaT);
        }
        if (!(beta1 > 0 && beta1 < 1) || !(beta2 > 0 && beta2 < 1)) {
            throw new PeftException(where + ": 'beta1' and 'beta2' must be in (0, 1), found " + beta1 + " and " + beta2);
        }
        if (!(orthRegWeight >= 0)) {
            throw new PeftException(where + ": 'orth_reg_weight' must be >= 0, found " + orthRegWeight);
        }
        if (loraDropout < 0 || loraDropout >= 1) {
            throw new PeftException(where + ": 'lora_dropout' must be in [0, 1), found " + loraDropout);
        }
        if (useDora) {
            throw new PeftException(where + ": 'use_dora' is not supported by ADALORA (HF refuses it too)");
        }
        if (!"none".equals(bias)) {
            throw new PeftException(where + ": 'bias' = \"" + bias + "\" is not supported; use \"none\"");
        }
        if (!(initLoraWeights instanceof Boolean)) {
            throw new PeftException(where + ": 'init_lora_weights' = " + initLoraWeights + " is not supported by ADALORA; use true or false");
        }
        if (rankPattern != null) {
            rankPattern.forEach((k, v) -> {
                if (v == null || v.stream().anyMatch(java.util.Objects::isNull)) {
                    throw new PeftException(where + ": rank_pattern['" + k + "'] must be a list of booleans, found " + v);
                }
            });
        }
    }
}
