package io.github.peft4j.lora.moe;

import io.github.peft4j.PeftException;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.TargetedConfig;
import java.util.List;

/**
 * A mixture of LoRA experts ({@code peft_type} MOE_LORA, a peft4j method: Hugging Face PEFT 0.21 has no such type):
 * every targeted linear or Conv1D layer gets {@code num_experts} LoRA experts and a token-level router,
 * <pre>
 *   p = softmax(W_g x)                         (num_experts; the router sees the layer input, without dropout)
 *   g = top_k(p) / Σ top_k(p)                   (zero outside the top_k experts of the token, renormalised)
 *   y = base(x) + Σ_e g_e · B_e A_e dropout(x) · lora_alpha / r
 * </pre>
 * trained with the task loss plus {@code router_aux_loss_coef} times a load-balancing loss (see
 * {@link MoeLoraAdapter#extraLoss}). With one expert it is exactly LoRA.
 *
 * <pre>{@code
 * MoeLoraConfig c = new MoeLoraConfig().numExperts(4).topK(2).r(4).loraAlpha(8);
 * c.targetModules("q_proj", "v_proj");
 * }</pre>
 */
public class MoeLoraConfig extends TargetedConfig {
    /** The method's {@code peft_type}. */
    public static final String PEFT_TYPE = "MOE_LORA";
    private int r = 8;
    private Number loraAlpha = 8;
    private double loraDropout;
    private int numExperts = 4;
    private int topK = 2;
    private double routerAuxLossCoef = 0.01;
    private boolean fanInFanOut;
    private Object initLoraWeights = Boolean.TRUE;

    /** Defaults: 4 experts, top 2, r 8, alpha 8, no dropout, aux-loss coefficient 0.01 (Mixtral's default). */
    public MoeLoraConfig() {
        super(PEFT_TYPE);
    }

    /** @return the rank of every expert */
    public int r() {
        return r;
    }

    /**
     * @param r the rank of every expert (positive)
     * @return this
     */
    public MoeLoraConfig r(int r) {
        this.r = r;
        return this;
    }

    /** @return {@code lora_alpha} */
    public double loraAlpha() {
        return loraAlpha.doubleValue();
    }

    /**
     * @param alpha {@code lora_alpha}: each expert's update is scaled by {@code alpha / r}
     * @return this
     */
    public MoeLoraConfig loraAlpha(Number alpha) {
        this.loraAlpha = alpha;
        return this;
    }

    /** @return the dropout probability on the experts' input */
    public double loraDropout() {
        return loraDropout;
    }

    /**
     * @param p dropout probability in [0, 1) on the experts' input (the router sees the input without dropout)
     * @return this
     */
    public MoeLoraConfig loraDropout(double p) {
        this.loraDropout = p;
        return this;
    }

    /** @return the number of experts per layer */
    public int numExperts() {
        return numExperts;
    }

    /**
     * @param n experts per layer (positive)
     * @return this
     */
    public MoeLoraConfig numExperts(int n) {
        this.numExperts = n;
        return this;
    }

    /** @return how many experts each token uses */
    public int topK() {
        return topK;
    }

    /**
     * @param k experts per token, in [1, num_experts]
     * @return this
     */
    public MoeLoraConfig topK(int k) {
        this.topK = k;
        return this;
    }

    /** @return the weight of the load-balancing loss */
    public double routerAuxLossCoef() {
        return routerAuxLossCoef;
    }

    /**
     * @param coef weight of the load-balancing loss added to the training loss (&gt;= 0; 0: none)
     * @return this
     */
    public MoeLoraConfig routerAuxLossCoef(double coef) {
        this.routerAuxLossCoef = coef;
        return this;
    }

    /** @return {@code fan_in_fan_out} as configured (the layer's own layout is what is used) */
    public boolean fanInFanOut() {
        return fanInFanOut;
    }

    /** @return {@code init_lora_weights}: true (every B zero: the adapter starts as the base model) or false (B random) */
    public Object initLoraWeights() {
        return initLoraWeights;
    }

    /**
     * @param init true or false
     * @return this
     */
    public MoeLoraConfig initLoraWeights(Object init) {
        this.initLoraWeights = init;
        return this;
    }

    /** @return each expert's scale {@code lora_alpha / r} */
    public double scaling() {
        return loraAlpha.doubleValue() / r;
    }

    /**
     * @param targets module names or dotted suffixes
     * @return this
     */
    @Override
    public MoeLoraConfig targetModules(String... targets) {
        super.targetModules(targets);
        return this;
    }

    void expandTargets(List<String> paths) {
        targetModules = ModuleSpec.names(paths);
    }

    @Override
    public void validate(String where) {
        if (r <= 0) {
            throw new PeftException(where + ": 'r' must be a positive integer, found " + r);
        }
        if (numExperts <= 0) {
            throw new PeftException(where + ": 'num_experts' must be a positive integer, found " + numExperts);
        }
        if (topK < 1 || topK > numExperts) {
            throw new PeftException(where + ": 'top_k' must be in [1, num_experts = " + numExperts + "], found " + topK);
        }
        if (loraDropout < 0 || loraDropout >= 1) {
            throw new PeftException(where + ": 'lora_dropout' must be in [0, 1), found " + loraDropout);
        }
        if (!(routerAuxLossCoef >= 0)) {
            throw new PeftException(where + ": 'router_aux_loss_coef' must be >= 0, found " + routerAuxLossCoef);
        }
        if (!(Boolean.TRUE.equals(initLoraWeights) || Boolean.FALSE.equals(initLoraWeights))) {
            throw new PeftException(where + ": 'init_lora_weights' = " + initLoraWeights + " is not supported; use true or false");
        }
        if (loraAlpha == null || !(loraAlpha.doubleValue() > 0)) {
            throw new PeftException(where + ": 'lora_alpha' must be > 0, found " + loraAlpha);
        }
    }
}
