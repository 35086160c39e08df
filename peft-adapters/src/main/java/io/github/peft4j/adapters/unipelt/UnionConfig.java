package io.github.peft4j.adapters.unipelt;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.bottleneck.AdapterHubFormat;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import java.util.ArrayList;
import java.util.List;

/**
 * A union of AdapterHub methods acting together under one adapter name ({@code peft_type: UNION}), AdapterHub's
 * {@code ConfigUnion} ({@code adapters/configuration/adapter_config.py}): bottleneck adapters, at most one prefix tuning
 * and at most one LoRA, each in AdapterHub's own dict form ({@code configs}, exactly as in AdapterHub's
 * {@code adapter_config.json}). The presets are AdapterHub's: {@link #uniPelt()} (Mao et al. 2022: prefix tuning 10
 * tokens + Pfeiffer {@code seq_bn} + LoRA r 8 alpha 2, every part gated) and {@link #mam()} (He et al. 2021,
 * mix-and-match: prefix tuning 30 tokens with bottleneck 800 + parallel {@code par_bn}).
 *
 * <p>peft4j's own key {@code gate_positions} ({@code "all"} when absent, AdapterHub's mean over every position with
 * padding and later tokens; or {@code "attended"}) applies to every gate of the union (see {@link Gate}).
 *
 * <p>AdapterHub's rule for combining is kept: two parts of one architecture are refused, except two bottleneck adapters
 * that differ in both {@code mh_adapter} and {@code output_adapter}.
 */
public final class UnionConfig extends PeftConfig {
    /** The {@code peft_type}. */
    public static final String TYPE = "UNION";

    List<ObjectNode> configs = new ArrayList<>();
    @JsonInclude(JsonInclude.Include.NON_NULL)
    String gatePositions;

    /** An empty union: add parts with {@link #add}. */
    public UnionConfig() {
        super(TYPE);
    }

    /** The typed parts of a union. */
    public record Parts(List<BottleneckConfig> bottlenecks, HubPrefixConfig prefix, HubLoraConfig lora) {}

    /**
     * @param parts {@link BottleneckConfig}, {@link HubPrefixConfig} or {@link HubLoraConfig} values
     * @return a union of them
     */
    public static UnionConfig of(Object... parts) {
        UnionConfig u = new UnionConfig();
        for (Object p : parts) {
            u.add(p);
        }
        return u;
    }

    /**
     * AdapterHub's {@code UniPELTConfig()}: prefix tuning (10 tokens), {@code seq_bn} (reduction 16), LoRA (r 8, alpha
     * 2), each with {@code use_gating}.
     *
     * @return the config
     */
    public static UnionConfig uniPelt() {
        return of(new HubPrefixConfig().prefixLength(10).useGating(true),
                BottleneckConfig.seqBn().reductionFactor(16).useGating(true), new HubLoraConfig().rank(8, 2).useGating(true));
    }

    /**
     * AdapterHub's {@code MAMConfig()}: prefix tuning (30 tokens, bottleneck 800) and {@code par_bn}.
     *
     * @return the config
     */
    public static UnionConfig mam() {
        return of(new HubPrefixConfig().bottleneckSize(800), BottleneckConfig.parBn());
    }

    /**
     * @param part a {@link BottleneckConfig}, {@link HubPrefixConfig} or {@link HubLoraConfig}
     * @return this
     */
    public UnionConfig add(Object part) {
        if (part instanceof BottleneckConfig b) {
            configs.add(AdapterHubFormat.hubDict(b));
        } else if (part instanceof HubPrefixConfig || part instanceof HubLoraConfig) {
            configs.add(PeftMethods.mapper().valueToTree(part));
        } else {
            throw new PeftException("a union part is a BottleneckConfig, HubPrefixConfig or HubLoraConfig, got "
                    + (part == null ? "null" : part.getClass().getName()));
        }
        return this;
    }

    /**
     * @param positions which positions every gate of the union averages over
     * @return this
     */
    public UnionConfig gatePositions(Gate.Positions positions) {
        gatePositions = positions == null || positions == Gate.Positions.ALL ? null : positions.value();
        return this;
    }

    /** @return the gates' positions ({@link Gate.Positions#ALL}, AdapterHub's, unless set) */
    public Gate.Positions gatePositions() {
        return Gate.Positions.parse(gatePositions, "union config");
    }

    /** @return AdapterHub's {@code {"architecture": "union", "configs": [...]}} */
    public ObjectNode adapterHubConfig() {
        ObjectNode n = PeftMethods.mapper().createObjectNode();
        n.put("architecture", "union");
        n.set("configs", PeftMethods.mapper().valueToTree(configs));
        return n;
    }

    /**
     * The parts, typed and checked.
     *
     * @param where for messages
     * @return the parts
     */
    public Parts parts(String where) {
        List<BottleneckConfig> bns = new ArrayList<>();
        HubPrefixConfig prefix = null;
        HubLoraConfig lora = null;
        if (configs == null || configs.isEmpty()) {
            throw new PeftException(where + ": a union needs 'configs' (a list of AdapterHub configs), got none");
        }
        for (int i = 0; i < configs.size(); i++) {
            ObjectNode c = configs.get(i);
            String at = where + ": configs[" + i + "]";
            JsonNode arch = c.get("architecture");
            String a = arch == null || arch.isNull() ? "bottleneck" : arch.asText();
            try {
                switch (a) {
                    case "bottleneck" -> {
                        BottleneckConfig b = AdapterHubFormat.bottleneckConfig(c, at);
                        for (BottleneckConfig other : bns) { // AdapterHub's ConfigUnion.validate
                            boolean apart = other.mhAdapter() != b.mhAdapter() && other.outputAdapter() != b.outputAdapter();
                            if (!apart && other.leaveOut().isEmpty() && b.leaveOut().isEmpty()) {
                                throw new PeftException(at + ": two bottleneck configs that overlap in mh_adapter /"
                                        + " output_adapter cannot be combined (AdapterHub's rule)");
                            }
                        }
                        bns.add(b);
                    }
                    case HubPrefixConfig.ARCHITECTURE -> {
                        if (prefix != null) {
                            throw new PeftException(at + ": a second prefix_tuning config (a union holds one)");
                        }
                        prefix = PeftMethods.mapper().treeToValue(c, HubPrefixConfig.class);
                        prefix.validate(at);
                    }
                    case HubLoraConfig.ARCHITECTURE -> {
                        if (lora != null) {
                            throw new PeftException(at + ": a second lora config (a union holds one)");
                        }
                        lora = PeftMethods.mapper().treeToValue(c, HubLoraConfig.class);
                        lora.validate(at);
                    }
                    default -> throw new PeftException(at + ": architecture '" + a + "' is not supported in a union"
                            + " (expected a bottleneck config, prefix_tuning or lora)");
                }
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new PeftException(at + ": invalid " + a + " config: " + e.getOriginalMessage(), e);
            }
        }
        return new Parts(bns, prefix, lora);
    }

    @Override
    public void validate(String where) {
        parts(where);
        Gate.Positions.parse(gatePositions, where);
    }
}
