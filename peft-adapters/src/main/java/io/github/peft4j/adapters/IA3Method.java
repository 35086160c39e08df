package io.github.peft4j.adapters;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import io.github.peft4j.peft.Targets;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The IA3 method ({@code peft_type: IA3}): wraps each target projection in an {@link IA3Layer}. Saved keys
 * are {@code base_model.model.<module path>.ia3_l}, shape {@code (out, 1)} or, for feed-forward targets,
 * {@code (1, in)}, as HF PEFT writes them.
 */
public final class IA3Method implements PeftMethod {
    private static final Logger LOG = LoggerFactory.getLogger(IA3Method.class);
    /** HF's {@code TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING} for the model types peft4j supports. */
    static final Map<String, List<String>> DEFAULT_TARGETS = Map.of(
            "gpt2", List.of("c_attn", "mlp.c_proj"),
            "llama", List.of("k_proj", "v_proj", "down_proj"),
            "mistral", List.of("k_proj", "v_proj", "down_proj"),
            "qwen2", List.of("k_proj", "v_proj", "down_proj"),
            "bert", List.of("key", "value", "output.dense"));
    /** HF's {@code TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING}. */
    static final Map<String, List<String>> DEFAULT_FEEDFORWARD = Map.of(
            "gpt2", List.of("mlp.c_proj"),
            "llama", List.of("down_proj"),
            "mistral", List.of("down_proj"),
            "qwen2", List.of("down_proj"),
            "bert", List.of("output.dense"));

    /** Used by {@link java.util.ServiceLoader}. */
    public IA3Method() {}

    @Override
    public String peftType() {
        return IA3Config.PEFT_TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return IA3Config.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        IA3Config c = (IA3Config) config;
        TransformerModel model = context.model();
        applyDefaults(c, model);
        List<String> paths = Targets.select(model, c, m -> m instanceof Projection, "linear and Conv1D layers");
        for (String path : paths) {
            Module current = model.resolve(path);
            if (current instanceof AdapterLayer && !(current instanceof IA3Layer)) {
                // checked before installing anything, so a refused attach leaves the model unchanged
                throw new PeftException("IA3: module '" + path + "' is already adapted by "
                        + current.getClass().getSimpleName() + "; one method per module (delete that adapter first)");
            }
            fixFanInFanOut(c, path, (Projection) Targets.innermost(current));
        }
        Map<String, AdapterLayer> layers = LayerAdapter.install(context, paths, IA3Layer.class,
                new LayerAdapter.Installer<>() {
                    @Override
                    public IA3Layer wrap(String path, Module base, AdapterState state) {
                        return new IA3Layer((Projection) base, state);
                    }

                    @Override
                    public void add(IA3Layer layer, String path) {
                        layer.addAdapter(name, c.isFeedforward(path), c.initIa3Weights(), path);
                    }
                });
        return new LayerAdapter(name, c, model, layers, LayerAdapter.TUNER_PREFIX);
    }

    /** HF fills absent {@code target_modules} / {@code feedforward_modules} from per-model-type tables. */
    private static void applyDefaults(IA3Config c, TransformerModel model) {
        String type = model.config().modelType();
        if (c.targetModules() == null) {
            List<String> t = DEFAULT_TARGETS.get(type);
            if (t == null) {
                throw new PeftException("IA3: target_modules is required for model_type '" + type
                        + "' (defaults exist for " + DEFAULT_TARGETS.keySet() + ")");
            }
            c.targetModules(ModuleSpec.names(t));
        }
        if (c.feedforwardModules() == null && DEFAULT_FEEDFORWARD.containsKey(type)) {
            c.feedforwardModules(ModuleSpec.names(DEFAULT_FEEDFORWARD.get(type)));
        }
    }

    /** HF's warn-and-fix: the layer's real layout wins (Conv1D is fan_in_fan_out, linear is not). */
    private static void fixFanInFanOut(IA3Config c, String path, Projection projection) {
        io.github.peft4j.nn.DenseWeights p = projection.dense();
        if (p != null && c.fanInFanOut() != p.fanInFanOut()) {
            LOG.warn("IA3: fan_in_fan_out is {} but '{}' is a {} whose weight is stored {}; setting fan_in_fan_out to {}",
                    c.fanInFanOut(), path, p.getClass().getSimpleName(), p.fanInFanOut() ? "(in, out)" : "(out, in)",
                    p.fanInFanOut());
            c.fanInFanOut(p.fanInFanOut());
        }
    }
}
