package io.github.peft4j.adapters.bottleneck;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterContext;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethod;
import java.util.ArrayList;
import java.util.List;

/**
 * Bottleneck adapters ({@code BOTTLENECK}, AdapterHub's {@code BnConfig}) at the model's hook sites: a sequential
 * adapter at {@link SiteRole#ATTENTION_OUTPUT} ({@code mh_adapter}) and {@link SiteRole#FFN_OUTPUT}
 * ({@code output_adapter}), a parallel one ({@code is_parallel}) at {@link SiteRole#ATTENTION_PARALLEL} /
 * {@link SiteRole#FFN_PARALLEL}, in every layer not in {@code leave_out}. Each block also installs a
 * {@link io.github.peft4j.model.SiteFinisher} at the output site of its sub-block, so the last active adapter there
 * decides how the sub-block ends (AdapterHub's {@code post_forward}: {@code original_ln_after}).
 */
public final class BottleneckMethod implements PeftMethod {
    @Override
    public String peftType() {
        return BottleneckConfig.TYPE;
    }

    @Override
    public Class<? extends PeftConfig> configType() {
        return BottleneckConfig.class;
    }

    @Override
    public Adapter attach(AdapterContext context, String name, PeftConfig config) {
        return build(context, name, (BottleneckConfig) config);
    }

    /**
     * Builds a bottleneck adapter (also used as one part of a union adapter, UniPELT / MAM).
     *
     * @param context the model and state
     * @param name the adapter name
     * @param c the config
     * @return the adapter, its hooks installed
     */
    public static BottleneckAdapter build(AdapterContext context, String name, BottleneckConfig c) {
        TransformerModel model = context.model();
        int layers = model.dims().layers();
        for (int l : c.leaveOut()) {
            if (l < 0 || l >= layers) {
                throw new PeftException(context.source() + ": leave_out has layer " + l + ", the model has layers 0.."
                        + (layers - 1));
            }
        }
        AdapterHubLayout layout = AdapterHubLayout.of(model);
        int hidden = model.hiddenSize();
        List<BottleneckAdapter.Placed> placed = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            if (c.leaveOut().contains(i)) {
                continue;
            }
            int r = c.bottleneck(hidden, i, context.source());
            if (c.mhAdapter()) {
                SiteRole role = c.isParallel() ? SiteRole.ATTENTION_PARALLEL : SiteRole.ATTENTION_OUTPUT;
                placed.add(new BottleneckAdapter.Placed(layout.holder(true, i), new BottleneckBlock(c, model.site(role, i),
                        model.site(SiteRole.ATTENTION_OUTPUT, i), hidden, r, model.manager(), model::isTraining,
                        context.state()::attentionMask)));
            }
            if (c.outputAdapter()) {
                SiteRole role = c.isParallel() ? SiteRole.FFN_PARALLEL : SiteRole.FFN_OUTPUT;
                placed.add(new BottleneckAdapter.Placed(layout.holder(false, i), new BottleneckBlock(c, model.site(role, i),
                        model.site(SiteRole.FFN_OUTPUT, i), hidden, r, model.manager(), model::isTraining,
                        context.state()::attentionMask)));
            }
        }
        if (placed.isEmpty()) {
            throw new PeftException(context.source() + ": leave_out " + c.leaveOut() + " leaves no layer for an adapter");
        }
        NiceBlock inv = c.invAdapter() == null ? null : new NiceBlock(model.site(SiteRole.EMBEDDING_OUTPUT, -1),
                model.config().has("embedding_size") ? model.config().integer("embedding_size") : hidden, c.invReduction(),
                c.nonLinearityName(), model.manager());
        return new BottleneckAdapter(name, c, context.state(), placed, inv, layout.root() + "invertible_adapters");
    }
}
