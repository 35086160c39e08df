package io.github.peft4j.adapters.unipelt;

import io.github.peft4j.PeftException;
import java.util.ArrayList;
import java.util.List;

/**
 * AdapterHub's {@code PrefixTuningConfig} ({@code architecture: "prefix_tuning"},
 * {@code adapters/configuration/adapter_config.py}) as one part of a {@link UnionConfig}: a prefix of
 * {@code prefix_length} keys and values in every self-attention layer not in {@code leave_out}, made by
 * {@code Embedding(prefix_length, hidden) -> Linear(hidden, bottleneck_size) -> non_linearity ->
 * Linear(bottleneck_size, layers * 2 * kv_heads * head_dim)}, or stored directly ({@code flat}). With
 * {@code use_gating} each layer scales its prefix by a gate from its attention input (one gate for keys and values with
 * {@code shared_gating}, else one each). Field names and defaults are AdapterHub's.
 */
public final class HubPrefixConfig {
    /** AdapterHub's {@code architecture} value. */
    public static final String ARCHITECTURE = "prefix_tuning";

    String architecture = ARCHITECTURE;
    boolean encoderPrefix = true;
    boolean crossPrefix = true;
    List<Integer> leaveOut = new ArrayList<>();
    boolean flat;
    int prefixLength = 30;
    int bottleneckSize = 512;
    String nonLinearity = "tanh";
    double dropout = 0.0;
    boolean useGating;
    boolean sharedGating = true;
    Integer initWeightsSeed;

    /** AdapterHub's defaults (prefix 30, bottleneck 512, tanh). */
    public HubPrefixConfig() {}

    /**
     * @param n {@code prefix_length}
     * @return this
     */
    public HubPrefixConfig prefixLength(int n) {
        prefixLength = n;
        return this;
    }

    /**
     * @param n {@code bottleneck_size} of the reparameterising MLP
     * @return this
     */
    public HubPrefixConfig bottleneckSize(int n) {
        bottleneckSize = n;
        return this;
    }

    /**
     * @param on {@code flat}: the prefix is one parameter, no MLP
     * @return this
     */
    public HubPrefixConfig flat(boolean on) {
        flat = on;
        return this;
    }

    /**
     * @param on {@code use_gating}
     * @return this
     */
    public HubPrefixConfig useGating(boolean on) {
        useGating = on;
        return this;
    }

    /**
     * @param on {@code shared_gating}: one gate for keys and values (else one each)
     * @return this
     */
    public HubPrefixConfig sharedGating(boolean on) {
        sharedGating = on;
        return this;
    }

    /**
     * @param layers {@code leave_out}
     * @return this
     */
    public HubPrefixConfig leaveOut(List<Integer> layers) {
        leaveOut = new ArrayList<>(layers);
        return this;
    }

    /**
     * @param p {@code dropout} on the prefix keys and values in training
     * @return this
     */
    public HubPrefixConfig dropout(double p) {
        dropout = p;
        return this;
    }

    /** @return {@code prefix_length} */
    public int prefixLength() {
        return prefixLength;
    }

    /** @return {@code use_gating} */
    public boolean useGating() {
        return useGating;
    }

    void validate(String where) {
        if (prefixLength <= 0) {
            throw new PeftException(where + ": prefix_tuning prefix_length must be > 0, got " + prefixLength);
        }
        if (!flat && bottleneckSize <= 0) {
            throw new PeftException(where + ": prefix_tuning bottleneck_size must be > 0, got " + bottleneckSize);
        }
        String act = nonLinearity == null ? "" : nonLinearity.toLowerCase(java.util.Locale.ROOT);
        if (!"tanh".equals(act) && !io.github.peft4j.nn.Ops.isSupportedActivation(act)) {
            throw new PeftException(where + ": prefix_tuning non_linearity '" + nonLinearity
                    + "' is not supported; expected tanh, relu, swish, silu, gelu or gelu_new");
        }
        if (!(dropout >= 0 && dropout < 1)) {
            throw new PeftException(where + ": prefix_tuning dropout must be in [0, 1), got " + dropout);
        }
        if (leaveOut == null) {
            leaveOut = new ArrayList<>();
        }
    }
}
