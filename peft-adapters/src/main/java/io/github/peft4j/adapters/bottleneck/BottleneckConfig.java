package io.github.peft4j.adapters.bottleneck;

import com.fasterxml.jackson.annotation.JsonProperty;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A bottleneck adapter ({@code peft_type: BOTTLENECK}) with the fields, names and meaning of AdapterHub's
 * {@code BnConfig} ({@code adapters/configuration/adapter_config.py}): {@code A(z) = up(act(down(z))) * scaling}
 * with a bottleneck of {@code hidden // reduction_factor}, after the attention block ({@code mh_adapter}) and/or the
 * feed-forward block ({@code output_adapter}) of every layer not in {@code leave_out}. The presets are AdapterHub's:
 * {@link #seqBn()} (Pfeiffer, {@code seq_bn}), {@link #doubleSeqBn()} (Houlsby, {@code double_seq_bn}),
 * {@link #parBn()} (parallel, {@code par_bn}); a new config starts as {@code seq_bn}, AdapterHub's default.
 *
 * {@link #seqBnInv()} / {@link #doubleSeqBnInv()} ({@code seq_bn_inv}, {@code double_seq_bn_inv}) add AdapterHub's NICE
 * invertible adapter ({@code inv_adapter: "nice"}) on the embedding output.
 *
 * <p>{@code original_ln_after: false} (as in AdapterHub's AdapterPlus) ends the sub-block with the adapter's output as
 * it is: neither the model's residual add nor BERT's LayerNorm follows (a {@link io.github.peft4j.model.SiteFinisher}).
 *
 * <p>Not supported (a clear error): {@code phm_layer} (Compacter), {@code inv_adapter: "glow"}, {@code cross_adapter},
 * and {@code stochastic_depth > 0}.
 *
 * <p>peft4j's own key {@code gate_positions} ({@code "all"}, AdapterHub's, when absent; or {@code "attended"}) chooses the
 * positions a {@code use_gating} gate averages over (see {@link io.github.peft4j.adapters.unipelt.Gate}); it is not
 * written when absent, so AdapterHub's files stay as AdapterHub writes them.
 */
public final class BottleneckConfig extends PeftConfig {
    /** The {@code peft_type}. */
    public static final String TYPE = "BOTTLENECK";

    boolean mhAdapter;
    boolean outputAdapter = true;
    /** A number, or a map from layer index (as a string) or {@code "default"} to a number. */
    Object reductionFactor = 16;
    String nonLinearity = "relu";
    boolean originalLnBefore = true;
    boolean originalLnAfter = true;
    boolean lnBefore;
    boolean lnAfter;
    String initWeights = "bert";
    Integer initWeightsSeed;
    boolean isParallel;
    /** A number, {@code "learned"} (one parameter) or {@code "channel"} (one per hidden unit). */
    Object scaling = 1.0;
    boolean useGating;
    /** true, false or {@code "post_add"}. */
    Object residualBeforeLn = true;
    boolean adapterResidualBeforeLn;
    String invAdapter;
    /** A number (AdapterHub writes the presets' 2 as an integer). */
    Number invAdapterReductionFactor;
    boolean crossAdapter;
    List<Integer> leaveOut = new ArrayList<>();
    double dropout = 0.0;
    boolean phmLayer;
    int phmDim = 4;
    @JsonProperty("factorized_phm_W")
    Boolean factorizedPhmW = true;
    @JsonProperty("shared_W_phm")
    Boolean sharedWPhm = false;
    Boolean sharedPhmRule = true;
    Boolean factorizedPhmRule = false;
    @JsonProperty("phm_c_init")
    String phmCInit = "normal";
    Double phmInitRange = 0.0001;
    Boolean learnPhm = true;
    String hypercomplexNonlinearity = "glorot-uniform";
    Integer phmRank = 1;
    Boolean phmBias = true;
    Double stochasticDepth = 0.0;
    @com.fasterxml.jackson.annotation.JsonInclude(com.fasterxml.jackson.annotation.JsonInclude.Include.NON_NULL)
    String gatePositions;

    /** A {@code seq_bn} config (AdapterHub's default). */
    public BottleneckConfig() {
        super(TYPE);
    }

    /** @return Pfeiffer et al. (2020), AdapterHub's {@code seq_bn}: output adapter, r 16, relu, original_ln_before */
    public static BottleneckConfig seqBn() {
        return new BottleneckConfig();
    }

    /** @return Houlsby et al. (2019), AdapterHub's {@code double_seq_bn}: both adapters, r 16, swish */
    public static BottleneckConfig doubleSeqBn() {
        BottleneckConfig c = new BottleneckConfig();
        c.originalLnBefore = false;
        c.mhAdapter = true;
        c.nonLinearity = "swish";
        return c;
    }

    /** @return He et al. (2021), AdapterHub's {@code par_bn}: parallel output adapter, r 2, relu, scaling 4, mam init */
    public static BottleneckConfig parBn() {
        BottleneckConfig c = new BottleneckConfig();
        c.originalLnBefore = false;
        c.reductionFactor = 2;
        c.initWeights = "mam_adapter";
        c.isParallel = true;
        c.scaling = 4.0;
        return c;
    }

    /** @return AdapterHub's {@code seq_bn_inv}: {@link #seqBn()} + a NICE invertible adapter (reduction 2) on the embeddings */
    public static BottleneckConfig seqBnInv() {
        return seqBn().invAdapter("nice", 2.0);
    }

    /** @return AdapterHub's {@code double_seq_bn_inv}: {@link #doubleSeqBn()} + a NICE invertible adapter (reduction 2) */
    public static BottleneckConfig doubleSeqBnInv() {
        return doubleSeqBn().invAdapter("nice", 2.0);
    }

    /**
     * @param name an AdapterHub preset: {@code seq_bn} / {@code pfeiffer}, {@code double_seq_bn} / {@code houlsby},
     *     {@code par_bn} / {@code parallel}, {@code scaled_parallel} / {@code scaled_par_bn} (par_bn with learned
     *     scaling), {@code seq_bn_inv} / {@code pfeiffer+inv}, {@code double_seq_bn_inv} / {@code houlsby+inv}
     * @return a new config
     */
    public static BottleneckConfig preset(String name) {
        return switch (name) {
            case "seq_bn", "pfeiffer" -> seqBn();
            case "double_seq_bn", "houlsby" -> doubleSeqBn();
            case "par_bn", "parallel" -> parBn();
            case "scaled_parallel", "scaled_par_bn" -> parBn().scaling("learned");
            case "seq_bn_inv", "pfeiffer+inv" -> seqBnInv();
            case "double_seq_bn_inv", "houlsby+inv" -> doubleSeqBnInv();
            default -> throw new PeftException("unknown bottleneck preset '" + name + "'; expected seq_bn, pfeiffer,"
                    + " double_seq_bn, houlsby, par_bn, parallel, scaled_parallel, scaled_par_bn, seq_bn_inv, pfeiffer+inv,"
                    + " double_seq_bn_inv or houlsby+inv");
        };
    }

    /**
     * @param kind {@code "nice"} (AdapterHub's NICE coupling block on the embedding output), or null for none
     * @param reductionFactor the coupling subnetworks' reduction ({@code inv_adapter_reduction_factor})
     * @return this
     */
    public BottleneckConfig invAdapter(String kind, double reductionFactor) {
        invAdapter = kind;
        invAdapterReductionFactor = kind == null ? null
                : reductionFactor == Math.rint(reductionFactor) ? (Number) (int) reductionFactor : (Number) reductionFactor;
        return this;
    }

    /**
     * @param positions which positions a {@code use_gating} gate averages over (peft4j's {@code gate_positions})
     * @return this
     */
    public BottleneckConfig gatePositions(io.github.peft4j.adapters.unipelt.Gate.Positions positions) {
        gatePositions = positions == null || positions == io.github.peft4j.adapters.unipelt.Gate.Positions.ALL ? null
                : positions.value();
        return this;
    }

    /** @return the gate's positions (AdapterHub's {@code ALL} unless set) */
    public io.github.peft4j.adapters.unipelt.Gate.Positions gatePositions() {
        return io.github.peft4j.adapters.unipelt.Gate.Positions.parse(gatePositions, "bottleneck config");
    }

    /** @return {@code inv_adapter}, or null */
    public String invAdapter() {
        return invAdapter;
    }

    /** @return {@code inv_adapter_reduction_factor} (2 when unset, AdapterHub's presets' value) */
    double invReduction() {
        return invAdapterReductionFactor == null ? 2.0 : invAdapterReductionFactor.doubleValue();
    }

    /**
     * @param on adapters after the attention block
     * @return this
     */
    public BottleneckConfig mhAdapter(boolean on) {
        mhAdapter = on;
        return this;
    }

    /**
     * @param on adapters after the feed-forward block
     * @return this
     */
    public BottleneckConfig outputAdapter(boolean on) {
        outputAdapter = on;
        return this;
    }

    /**
     * @param factor hidden size / bottleneck size (> 0)
     * @return this
     */
    public BottleneckConfig reductionFactor(double factor) {
        reductionFactor = factor == Math.rint(factor) ? (Object) (int) factor : (Object) factor;
        return this;
    }

    /**
     * @param perLayer layer index (as a string) or {@code "default"} to reduction factor
     * @return this
     */
    public BottleneckConfig reductionFactor(Map<String, ? extends Number> perLayer) {
        reductionFactor = new java.util.LinkedHashMap<>(perLayer);
        return this;
    }

    /**
     * @param name the bottleneck activation (relu, swish, silu, gelu, gelu_new, tanh)
     * @return this
     */
    public BottleneckConfig nonLinearity(String name) {
        nonLinearity = name;
        return this;
    }

    /**
     * @param on apply the pretrained residual (and LayerNorm in BERT) before the adapter
     * @return this
     */
    public BottleneckConfig originalLnBefore(boolean on) {
        originalLnBefore = on;
        return this;
    }

    /**
     * @param on end the sub-block with the model's residual add (and LayerNorm in BERT) after the adapter, as the model
     *     does without one (AdapterHub's default); false returns the adapter's output as the sub-block's end
     * @return this
     */
    public BottleneckConfig originalLnAfter(boolean on) {
        originalLnAfter = on;
        return this;
    }

    /**
     * @param on a new LayerNorm on the adapter input
     * @return this
     */
    public BottleneckConfig lnBefore(boolean on) {
        lnBefore = on;
        return this;
    }

    /**
     * @param on a new LayerNorm on the adapter output
     * @return this
     */
    public BottleneckConfig lnAfter(boolean on) {
        lnAfter = on;
        return this;
    }

    /**
     * @param kind {@code bert}, {@code mam_adapter} or {@code houlsby}
     * @return this
     */
    public BottleneckConfig initWeights(String kind) {
        initWeights = kind;
        return this;
    }

    /**
     * @param on parallel to the sub-block instead of after it
     * @return this
     */
    public BottleneckConfig isParallel(boolean on) {
        isParallel = on;
        return this;
    }

    /**
     * @param value a fixed factor on the adapter output
     * @return this
     */
    public BottleneckConfig scaling(double value) {
        scaling = value;
        return this;
    }

    /**
     * @param kind {@code learned} (one trained factor) or {@code channel} (one per hidden unit)
     * @return this
     */
    public BottleneckConfig scaling(String kind) {
        scaling = kind;
        return this;
    }

    /**
     * @param on a learned gate {@code mean_seq(sigmoid(Linear(z)))} on the adapter output (UniPELT)
     * @return this
     */
    public BottleneckConfig useGating(boolean on) {
        useGating = on;
        return this;
    }

    /**
     * @param value true, false or {@code "post_add"} (see AdapterHub)
     * @return this
     */
    public BottleneckConfig residualBeforeLn(Object value) {
        residualBeforeLn = value;
        return this;
    }

    /**
     * @param on add the adapter residual before the new output LayerNorm
     * @return this
     */
    public BottleneckConfig adapterResidualBeforeLn(boolean on) {
        adapterResidualBeforeLn = on;
        return this;
    }

    /**
     * @param layers layers without adapters
     * @return this
     */
    public BottleneckConfig leaveOut(List<Integer> layers) {
        leaveOut = new ArrayList<>(layers);
        return this;
    }

    /**
     * @param p dropout on the adapter output in training
     * @return this
     */
    public BottleneckConfig dropout(double p) {
        dropout = p;
        return this;
    }

    /** @return whether adapters follow the attention block */
    public boolean mhAdapter() {
        return mhAdapter;
    }

    /** @return whether adapters follow the feed-forward block */
    public boolean outputAdapter() {
        return outputAdapter;
    }

    /** @return whether the adapters are parallel */
    public boolean isParallel() {
        return isParallel;
    }

    /** @return the layers without adapters */
    public List<Integer> leaveOut() {
        return List.copyOf(leaveOut);
    }

    /**
     * The bottleneck size at a layer, as AdapterHub computes it: {@code max(1, int(hidden // factor))}.
     *
     * @param hidden the hidden size
     * @param layer the layer
     * @param where for messages
     * @return the size
     */
    int bottleneck(int hidden, int layer, String where) {
        double f;
        if (reductionFactor instanceof Number n) {
            f = n.doubleValue();
        } else {
            @SuppressWarnings("unchecked")
            Map<String, Object> m = (Map<String, Object>) reductionFactor;
            Object v = m.containsKey(Integer.toString(layer)) ? m.get(Integer.toString(layer)) : m.get("default");
            if (!(v instanceof Number n)) {
                throw new PeftException(where + ": reduction_factor has no value for layer " + layer
                        + " and no \"default\" (e.g. {\"1\": 8, \"default\": 16})");
            }
            f = n.doubleValue();
        }
        return Math.max(1, (int) Math.floor(hidden / f));
    }

    /** @return the fixed scaling, or NaN for {@code learned} / {@code channel} */
    double fixedScaling() {
        return scaling instanceof Number n ? n.doubleValue() : Double.NaN;
    }

    /** @return {@code learned}, {@code channel}, or null for a fixed factor */
    String learnedScaling() {
        return scaling instanceof String s ? s : null;
    }

    /** @return whether the adapter's residual is taken from its own input (after the pretrained residual/norm) */
    boolean residualAfterLn() {
        return Boolean.FALSE.equals(residualBeforeLn);
    }

    /** @return {@code residual_before_ln == "post_add"} */
    boolean residualPostAdd() {
        return "post_add".equals(residualBeforeLn);
    }

    String nonLinearityName() {
        return nonLinearity.toLowerCase(java.util.Locale.ROOT);
    }

    String initWeightsName() {
        return initWeights;
    }

    boolean originalLnBeforeOn() {
        return originalLnBefore;
    }

    boolean originalLnAfterOn() {
        return originalLnAfter;
    }

    boolean lnBeforeOn() {
        return lnBefore;
    }

    boolean lnAfterOn() {
        return lnAfter;
    }

    boolean gated() {
        return useGating;
    }

    boolean adapterResidualBeforeLnOn() {
        return adapterResidualBeforeLn;
    }

    double dropoutP() {
        return dropout;
    }

    /** @return {@code base_model_name_or_path}, or null */
    String baseModelNameOrPathValue() {
        return baseModelNameOrPath;
    }

    Integer initSeed() {
        return initWeightsSeed;
    }

    @Override
    public void validate(String where) {
        if (!mhAdapter && !outputAdapter) {
            throw new PeftException(where + ": mh_adapter and output_adapter are both false: no adapter would be added");
        }
        if (reductionFactor instanceof Number n) {
            if (!(n.doubleValue() > 0)) {
                throw new PeftException(where + ": reduction_factor must be > 0, got " + n);
            }
        } else if (reductionFactor instanceof Map<?, ?> m) {
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!(e.getValue() instanceof Number n) || !(n.doubleValue() > 0)) {
                    throw new PeftException(where + ": reduction_factor[\"" + e.getKey() + "\"] must be a number > 0, got "
                            + e.getValue());
                }
            }
        } else {
            throw new PeftException(where + ": reduction_factor must be a number or a map of layer to number, got "
                    + reductionFactor);
        }
        String act = nonLinearityName();
        if (!"tanh".equals(act) && !Ops.isSupportedActivation(act)) {
            throw new PeftException(where + ": non_linearity '" + nonLinearity
                    + "' is not supported; expected relu, swish, silu, gelu, gelu_new or tanh");
        }
        if (!List.of("bert", "mam_adapter", "houlsby").contains(initWeights)) {
            throw new PeftException(where + ": init_weights '" + initWeights + "'; expected bert, mam_adapter or houlsby");
        }
        if (!(scaling instanceof Number) && !"learned".equals(scaling) && !"channel".equals(scaling)) {
            throw new PeftException(where + ": scaling must be a number, \"learned\" or \"channel\", got " + scaling);
        }
        if (!(residualBeforeLn instanceof Boolean) && !"post_add".equals(residualBeforeLn)) {
            throw new PeftException(where + ": residual_before_ln must be true, false or \"post_add\", got " + residualBeforeLn);
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new PeftException(where + ": dropout must be in [0, 1), got " + dropout);
        }
        if (phmLayer) {
            throw new PeftException(where + ": phm_layer: true (Compacter) is not supported");
        }
        if (invAdapter != null && !"nice".equals(invAdapter)) {
            throw new PeftException(where + ": inv_adapter '" + invAdapter + "' is not supported (expected \"nice\" or null;"
                    + " GLOW coupling blocks are not implemented)");
        }
        if (invAdapterReductionFactor != null && !(invAdapterReductionFactor.doubleValue() > 0)) {
            throw new PeftException(where + ": inv_adapter_reduction_factor must be > 0, got " + invAdapterReductionFactor);
        }
        io.github.peft4j.adapters.unipelt.Gate.Positions.parse(gatePositions, where);
        if (crossAdapter) {
            throw new PeftException(where + ": cross_adapter: true is not supported (no encoder-decoder models)");
        }
        if (stochasticDepth != null && stochasticDepth > 0) {
            throw new PeftException(where + ": stochastic_depth " + stochasticDepth + " is not supported (expected 0)");
        }
        if (leaveOut == null) {
            leaveOut = new ArrayList<>();
        }
    }
}
