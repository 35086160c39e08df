package io.github.peft4j.adapters.unipelt;

import io.github.peft4j.PeftException;
import java.util.ArrayList;
import java.util.List;

/**
 * AdapterHub's {@code LoRAConfig} ({@code architecture: "lora"}) as one part of a {@link UnionConfig}: LoRA on the
 * self-attention matrices in {@code attn_matrices} ({@code selfattn_lora}), the feed-forward input
 * ({@code intermediate_lora}) and output ({@code output_lora}) projections of every layer not in {@code leave_out},
 * {@code y = W x + (x Aᵀ Bᵀ) · s} with {@code s = alpha / r}, or with {@code use_gating} {@code s} replaced by a gate
 * from the projection's input (UniPELT; such LoRA cannot be merged, as in AdapterHub). Field names and defaults are
 * AdapterHub's; {@code composition_mode: "scale"} (IA3), DoRA, VeRA and {@code dtype} are refused here (HF PEFT's
 * LoRA, IA3 and DoRA are peft4j's methods for those).
 */
public final class HubLoraConfig {
    /** AdapterHub's {@code architecture} value. */
    public static final String ARCHITECTURE = "lora";

    String architecture = ARCHITECTURE;
    boolean selfattnLora = true;
    boolean intermediateLora;
    boolean outputLora;
    List<Integer> leaveOut = new ArrayList<>();
    int r = 8;
    Number alpha = 8;
    double dropout = 0.0;
    List<String> attnMatrices = new ArrayList<>(List.of("q", "v"));
    String compositionMode = "add";
    String initWeights = "lora";
    Integer initWeightsSeed;
    boolean useGating;
    boolean useDora;
    Double veraD;
    Double veraB;
    String dtype;

    /** AdapterHub's defaults (q and v, r 8, alpha 8). */
    public HubLoraConfig() {}

    /**
     * @param rank {@code r}
     * @param scale {@code alpha} (an integer in AdapterHub's presets)
     * @return this
     */
    public HubLoraConfig rank(int rank, Number scale) {
        r = rank;
        alpha = scale;
        return this;
    }

    /**
     * @param on {@code use_gating}
     * @return this
     */
    public HubLoraConfig useGating(boolean on) {
        useGating = on;
        return this;
    }

    /**
     * @param matrices {@code attn_matrices} (of q, k, v)
     * @return this
     */
    public HubLoraConfig attnMatrices(List<String> matrices) {
        attnMatrices = new ArrayList<>(matrices);
        return this;
    }

    /**
     * @param selfattn {@code selfattn_lora}
     * @param intermediate {@code intermediate_lora}
     * @param output {@code output_lora}
     * @return this
     */
    public HubLoraConfig locations(boolean selfattn, boolean intermediate, boolean output) {
        selfattnLora = selfattn;
        intermediateLora = intermediate;
        outputLora = output;
        return this;
    }

    /**
     * @param layers {@code leave_out}
     * @return this
     */
    public HubLoraConfig leaveOut(List<Integer> layers) {
        leaveOut = new ArrayList<>(layers);
        return this;
    }

    /** @return {@code r} */
    public int r() {
        return r;
    }

    /** @return {@code use_gating} */
    public boolean useGating() {
        return useGating;
    }

    /** @return {@code alpha / r}, the scale of an ungated update */
    double scaling() {
        return alpha.doubleValue() / r;
    }

    void validate(String where) {
        if (r <= 0) {
            throw new PeftException(where + ": lora r must be > 0, got " + r);
        }
        if (!"add".equals(compositionMode)) {
            throw new PeftException(where + ": lora composition_mode '" + compositionMode + "' is not supported here"
                    + " (expected \"add\"; for (IA)^3 use peft4j's IA3 method)");
        }
        if (useDora || veraD != null || veraB != null) {
            throw new PeftException(where + ": lora use_dora / vera_d / vera_b are not supported in an AdapterHub union"
                    + " (use peft4j's LoRA method with use_dora for DoRA)");
        }
        if (dtype != null) {
            throw new PeftException(where + ": lora dtype '" + dtype + "' is not supported (expected null: fp32 parameters)");
        }
        if (!List.of("lora", "bert").contains(initWeights)) {
            throw new PeftException(where + ": lora init_weights '" + initWeights + "'; expected lora or bert");
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new PeftException(where + ": lora dropout must be in [0, 1), got " + dropout);
        }
        for (String m : attnMatrices) {
            if (!List.of("q", "k", "v").contains(m)) {
                throw new PeftException(where + ": lora attn_matrices has '" + m + "'; expected q, k or v");
            }
        }
        if (!selfattnLora && !intermediateLora && !outputLora) {
            throw new PeftException(where + ": lora selfattn_lora, intermediate_lora and output_lora are all false");
        }
        if (leaveOut == null) {
            leaveOut = new ArrayList<>();
        }
    }
}
