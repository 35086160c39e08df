package io.github.peft4j.train;

import ai.djl.ndarray.NDArray;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import io.github.peft4j.peft.TrainingHooks;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A test-only method ({@code peft_type: TEST_TRAINING_HOOKS}, registered in the test sources'
 * {@code META-INF/services}) that selects two RMSNorm weights of a Llama and trains them in place, with every
 * {@link TrainingHooks} method delegating to what the test sets on its {@link Probe}.
 */
public final class ProbeMethod implements PeftMethod {
    /** The peft_type. */
    public static final String TYPE = "TEST_TRAINING_HOOKS";
    /** The parameters the probe selects. */
    public static final String[] SELECTED = {"model.norm.weight", "model.layers.1.post_attention_layernorm.weight"};

    /** Used by {@link java.util.ServiceLoader}. */
    public ProbeMethod() {}

    /** The probe's config (no fields of its own). */
    public static final class ProbeConfig extends PeftConfig {
        /** Creates the config. */
        public ProbeConfig() {
            super(TYPE);
        }
    }

    /** The probe adapter: its parameters and the hooks the test sets. */
    public static final class Probe implements Adapter, TrainingHooks {
        private final String name;
        private final PeftConfig config;
        private final Map<String, Param> params = new LinkedHashMap<>();
        /** The extra loss term, or null. */
        public Function<TrainingStep, NDArray> extra;
        /** Called after backward, or null. */
        public Consumer<TrainingStep> afterBackward;
        /** Called after the optimizer step, or null. */
        public Consumer<TrainingStep> afterStep;

        Probe(String name, PeftConfig config, Map<String, Param> selected) {
            this.name = name;
            this.config = config;
            params.putAll(selected);
        }

        @Override
        public String name() {
            return name;
        }

        @Override
        public PeftConfig config() {
            return config;
        }

        @Override
        public Map<String, Param> parameters() {
            return params;
        }

        @Override
        public Map<String, NDArray> stateDict() {
            Map<String, NDArray> out = new LinkedHashMap<>();
            params.forEach((k, p) -> out.put(LayerAdapter.TUNER_PREFIX + k, p.array()));
            return out;
        }

        @Override
        public void loadStateDict(Map<String, NDArray> tensors, String source) {
            Map<String, Param> targets = new LinkedHashMap<>();
            params.forEach((k, p) -> targets.put(LayerAdapter.TUNER_PREFIX + k, p));
            LayerAdapter.copyInto(targets, tensors, source);
        }

        @Override
        public void remove() {
            params.values().forEach(p -> p.setTrainable(false));
            params.clear();
        }

        @Override
        public NDArray extraLoss(TrainingStep step) {
            return extra == null ? null : extra.apply(step);
        }

        @Override
        public void afterBackward(TrainingStep step) {
            if (afterBackward != null) {
                afterBackward.accept(step);
            }
        }

        @Override
        public void afterStep(TrainingStep step) {
            if (afterStep != null) {
                afterStep.accept(step);
            }
        }
    }

    @Override
    public String peftType() {
        return TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return ProbeConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        Map<String, Param> selected = new LinkedHashMap<>();
        for (String k : SELECTED) {
            selected.put(k, context.model().parameters().get(k));
        }
        return new Probe(name, config, selected);
    }
}
