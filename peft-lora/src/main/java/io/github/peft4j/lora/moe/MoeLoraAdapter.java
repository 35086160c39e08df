package io.github.peft4j.lora.moe;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.TrainingHooks;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A mixture-of-LoRA-experts adapter: its {@link MoeLoraLayer}s and the load-balancing loss ({@link #extraLoss}).
 * Files are {@link LayerAdapter}'s: {@code adapter_config.json} ({@code peft_type} MOE_LORA with {@code r},
 * {@code lora_alpha}, {@code lora_dropout}, {@code num_experts}, {@code top_k}, {@code router_aux_loss_coef},
 * {@code target_modules}) and per targeted module {@code base_model.model.<path>.moe_router.weight (E, in)},
 * {@code .moe_lora_A.weight (E, r, in)}, {@code .moe_lora_B.weight (E, out, r)}. It does not merge (the update
 * depends on each token); it runs per row in mixed-adapter batches.
 */
public final class MoeLoraAdapter extends LayerAdapter implements TrainingHooks {
    /** The error of a merge request, with the adapter name to fill in. */
    static final String NO_MERGE = "MOE_LORA adapter '%s' cannot be merged into the base weights: its update depends on"
            + " each token's routing (a per-token mixture of experts has no single weight delta); keep it as an adapter";
    private final MoeLoraConfig config;
    private final Map<String, MoeLoraLayer> moeLayers = new LinkedHashMap<>();

    /**
     * @param name the adapter name
     * @param config its resolved config
     * @param model the model
     * @param layers module path to wrapper (every one a {@link MoeLoraLayer} holding this adapter)
     */
    public MoeLoraAdapter(String name, MoeLoraConfig config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
        this.config = config;
        layers.forEach((p, l) -> moeLayers.put(p, (MoeLoraLayer) l));
    }

    /** @return module path to layer */
    public Map<String, MoeLoraLayer> moeLayers() {
        return java.util.Collections.unmodifiableMap(moeLayers);
    }

    /**
     * The load-balancing loss of the micro-batch just run: {@code router_aux_loss_coef} times the mean over the
     * adapter's layers of {@code E · Σ_e f_e · P_e} (the Switch Transformer's loss, in the top-k form of
     * transformers' Mixtral {@code load_balancing_loss_func}: {@code f_e} is the fraction of positions that route to
     * expert e among their top-k, {@code P_e} the mean router probability; it is {@code top_k} for perfectly uniform
     * routing and grows as routing concentrates). Positions are all those of the batch, padding included. The
     * gradient reaches the routers through {@code P}; {@code f} is a count.
     */
    @Override
    public NDArray extraLoss(TrainingStep step) {
        List<NDArray> terms = new ArrayList<>();
        for (MoeLoraLayer l : moeLayers.values()) {
            NDArray t = l.takeBalance(name());
            if (t != null) {
                terms.add(t);
            }
        }
        try {
            if (terms.isEmpty() || config.routerAuxLossCoef() == 0) {
                return null;
            }
            NDArray sum = terms.get(0);
            for (int i = 1; i < terms.size(); i++) {
                sum = sum.add(terms.get(i));
            }
            NDArray mean = sum.div(Ops.scalar(sum, terms.size()));
            return mean.mul(Ops.scalar(mean, config.routerAuxLossCoef()));
        } finally {
            // the layers took the terms out of their block scopes; the loss's graph keeps what backward needs
            terms.forEach(NDArray::close);
        }
    }
}
