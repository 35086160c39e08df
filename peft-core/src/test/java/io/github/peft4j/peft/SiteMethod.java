package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.HookSite;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A test-only method at hook sites ({@code peft_type: TEST_SITE}): at every site of one role it adds {@code scale *
 * input @ W} (W {@code [hidden, hidden]} trainable) to the sub-block output. With {@code scale = 0} its output is
 * all zeros, which must leave the model's logits bit-identical.
 */
final class SiteMethod implements PeftMethod {
    static final String TYPE = "TEST_SITE";

    /** Its config. */
    static final class Config extends PeftConfig {
        String role = SiteRole.FFN_PARALLEL.name();
        double scale = 1.0;

        Config() {
            super(TYPE);
        }
    }

    @Override
    public String peftType() {
        return TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return Config.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        Config c = (Config) config;
        TransformerModel model = context.model();
        NDManager m = model.manager();
        int hidden = model.hiddenSize();
        Map<String, Param> params = new LinkedHashMap<>();
        List<HookSite> sites = new ArrayList<>(model.sites(SiteRole.valueOf(c.role)));
        for (HookSite site : sites) {
            Param w = new Param(m.randomNormal(0f, 0.1f, new Shape(hidden, hidden), DataType.FLOAT32));
            params.put(site.name() + ".w", w);
            NDArray scale = m.full(new Shape(), (float) c.scale, DataType.FLOAT32);
            site.install(name, (input, output, residual) -> {
                if (!context.state().isActive(name)) {
                    return output;
                }
                return output.add(input.matMul(w.array()).mul(scale));
            });
        }
        return new Adapter() {
            @Override
            public String name() {
                return name;
            }

            @Override
            public PeftConfig config() {
                return c;
            }

            @Override
            public Map<String, Param> parameters() {
                return params;
            }

            @Override
            public Map<String, NDArray> stateDict() {
                Map<String, NDArray> out = new LinkedHashMap<>();
                params.forEach((k, p) -> out.put(k, p.array()));
                return out;
            }

            @Override
            public void loadStateDict(Map<String, NDArray> tensors, String source) {
                LayerAdapter.copyInto(params, tensors, source);
            }

            @Override
            public void remove() {
                sites.forEach(s -> s.uninstall(name));
                params.values().forEach(p -> p.array().close());
            }
        };
    }
}
