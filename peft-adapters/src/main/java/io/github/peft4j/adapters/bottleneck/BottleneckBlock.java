package io.github.peft4j.adapters.bottleneck;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.HookSite;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.BooleanSupplier;

/**
 * One bottleneck adapter at one hook site: AdapterHub's {@code Adapter} / {@code ParallelAdapter}
 * ({@code adapters/methods/modeling.py}) with its {@code pre_forward}, {@code forward} and {@code post_forward} folded
 * into what the site returns. Parameters carry AdapterHub's local names ({@code adapter_down.0.weight},
 * {@code adapter_up.bias}, {@code adapter_norm_before.weight}, {@code adapter_norm_after.weight}, {@code scaling},
 * {@code gate.weight}); with {@code ln_before} the down projection is {@code adapter_down.1} as in AdapterHub's
 * {@code nn.Sequential(LayerNorm, Linear, act)}.
 */
final class BottleneckBlock {
    static final float ADAPTER_LN_EPS = 1e-5f; // torch.nn.LayerNorm's default, which AdapterHub uses

    private final BottleneckConfig c;
    private final HookSite site;
    /** The output site that ends this block's sub-block ({@link HookSite#finish}): {@code site} itself when sequential. */
    private final HookSite finishSite;
    private final boolean parallel;
    private final BooleanSupplier training;
    private final java.util.function.Supplier<NDArray> attentionMask;
    private final io.github.peft4j.adapters.unipelt.Gate.Positions gatePositions;
    private final String downName;
    /** local name to parameter, in AdapterHub's order */
    final Map<String, Param> params = new LinkedHashMap<>();

    BottleneckBlock(BottleneckConfig c, HookSite site, HookSite finishSite, int hidden, int bottleneck, NDManager m,
            BooleanSupplier training, java.util.function.Supplier<NDArray> attentionMask) {
        this.c = c;
        this.site = site;
        this.finishSite = finishSite;
        this.parallel = c.isParallel();
        this.training = training;
        this.attentionMask = attentionMask;
        this.gatePositions = c.gatePositions();
        this.downName = c.lnBeforeOn() ? "adapter_down.1" : "adapter_down.0";
        if (c.initSeed() != null) { // AdapterHub's fix_seed: every module starts from the same seed
            Engine.getInstance().setRandomSeed(c.initSeed());
        }
        String init = c.initWeightsName();
        if (c.lnBeforeOn()) {
            params.put("adapter_norm_before.weight", new Param(m.ones(new Shape(hidden), DataType.FLOAT32)));
            params.put("adapter_norm_before.bias", new Param(m.zeros(new Shape(hidden), DataType.FLOAT32)));
        }
        NDArray downW = switch (init) {
            case "mam_adapter" -> m.randomUniform((float) -(1 / Math.sqrt(hidden)), (float) (1 / Math.sqrt(hidden)),
                    new Shape(bottleneck, hidden), DataType.FLOAT32); // kaiming_uniform_(a=sqrt(5))
            case "houlsby" -> truncatedNormal(m, new Shape(bottleneck, hidden));
            default -> m.randomNormal(0f, 0.02f, new Shape(bottleneck, hidden), DataType.FLOAT32);
        };
        params.put(downName + ".weight", new Param(downW));
        params.put(downName + ".bias", new Param(m.zeros(new Shape(bottleneck), DataType.FLOAT32)));
        NDArray upW = switch (init) {
            case "mam_adapter" -> m.zeros(new Shape(hidden, bottleneck), DataType.FLOAT32);
            case "houlsby" -> truncatedNormal(m, new Shape(hidden, bottleneck));
            default -> m.randomNormal(0f, 0.02f, new Shape(hidden, bottleneck), DataType.FLOAT32);
        };
        params.put("adapter_up.weight", new Param(upW));
        params.put("adapter_up.bias", new Param(m.zeros(new Shape(hidden), DataType.FLOAT32)));
        String learned = c.learnedScaling();
        if (learned != null) {
            params.put("scaling", new Param(m.ones(new Shape("channel".equals(learned) ? hidden : 1), DataType.FLOAT32)));
        }
        if (c.lnAfterOn()) {
            params.put("adapter_norm_after.weight", new Param(m.ones(new Shape(hidden), DataType.FLOAT32)));
            params.put("adapter_norm_after.bias", new Param(m.zeros(new Shape(hidden), DataType.FLOAT32)));
        }
        if (c.gated()) { // bert and mam_adapter: init_bert_weights; houlsby leaves nn.Linear's default init
            float bound = (float) (1 / Math.sqrt(hidden));
            boolean linearInit = "houlsby".equals(init);
            params.put("gate.weight", new Param(linearInit ? m.randomUniform(-bound, bound, new Shape(1, hidden), DataType.FLOAT32)
                    : m.randomNormal(0f, 0.02f, new Shape(1, hidden), DataType.FLOAT32)));
            params.put("gate.bias", new Param(linearInit ? m.randomUniform(-bound, bound, new Shape(1), DataType.FLOAT32)
                    : m.zeros(new Shape(1), DataType.FLOAT32)));
        }
    }

    /** N(0, 0.01) truncated to [-0.02, 0.02] (AdapterHub's houlsby init), by redrawing what falls outside. */
    private static NDArray truncatedNormal(NDManager m, Shape shape) {
        NDArray v = m.randomNormal(0f, 0.01f, shape, DataType.FLOAT32);
        for (int i = 0; i < 100; i++) {
            NDArray outside = v.abs().gt(0.02f);
            if (!outside.any().getBoolean()) {
                break;
            }
            v = ai.djl.ndarray.NDArrays.where(outside, m.randomNormal(0f, 0.01f, shape, DataType.FLOAT32), v);
        }
        return v;
    }

    /** A parameter in the compute dtype: fp32 leaves are cast in forward (fp16 compute) by a cast autograd sees. */
    private NDArray p(String name, DataType dt) {
        return Ops.cast(params.get(name).array(), dt);
    }

    /** @return the site this block is installed at */
    HookSite site() {
        return site;
    }

    /** @return the output site whose {@link HookSite#finish} ends this block's sub-block */
    HookSite finishSite() {
        return finishSite;
    }

    /**
     * AdapterHub's {@code post_forward} after the site's hooks (the parallel adapter's {@code + input_hidden_states}
     * is already in {@code output}): with {@code original_ln_after} the model's own step, the residual add and, in
     * post-LN models, its LayerNorm; without, the output as it is.
     *
     * @param output the sub-block output after every hook
     * @param residual the residual stream
     * @param standard the model's finishing step
     * @return the stream after the sub-block
     */
    NDArray finish(NDArray output, NDArray residual, java.util.function.BinaryOperator<NDArray> standard) {
        return c.originalLnAfterOn() ? standard.apply(output, residual) : output;
    }

    /**
     * What the site returns for these rows.
     *
     * @param h the sub-block output {@code [B, S, hidden]}
     * @param x the residual stream (the sub-block's input in BERT) {@code [B, S, hidden]}
     * @return the new sub-block output; the model then adds {@code x} (and BERT applies its LayerNorm)
     */
    NDArray apply(NDArray h, NDArray x) {
        if (parallel) { // ParallelAdapter: A(residual) next to the sub-block; post_forward adds the sub-block output
            return h.add(adapter(x));
        }
        NDArray residual = h; // residual_before_ln: true
        NDArray z = h;
        if (c.originalLnBeforeOn()) {
            z = h.add(x);
            if (c.residualPostAdd()) {
                residual = z;
            }
            if (site.hasPostNorm()) {
                z = site.postNorm(z);
            }
        }
        if (c.residualAfterLn()) {
            residual = z;
        }
        NDArray out = adapter(z);
        if (c.adapterResidualBeforeLnOn()) {
            out = out.add(residual);
            return c.lnAfterOn() ? norm(out, "adapter_norm_after") : out;
        }
        if (c.lnAfterOn()) {
            out = norm(out, "adapter_norm_after");
        }
        return out.add(residual);
    }

    /** up(act(down(ln_before(z)))) * scaling, dropout, gate; for the parallel adapter also ln_after. */
    private NDArray adapter(NDArray z) {
        DataType dt = z.getDataType();
        NDArray in = c.lnBeforeOn() ? norm(z, "adapter_norm_before") : z;
        NDArray down = ai.djl.nn.core.Linear.linear(in, p(downName + ".weight", dt), p(downName + ".bias", dt)).head();
        down = activate(c.nonLinearityName(), down);
        NDArray up = ai.djl.nn.core.Linear.linear(down, p("adapter_up.weight", dt), p("adapter_up.bias", dt)).head();
        up = c.learnedScaling() != null ? up.mul(p("scaling", dt)) : up.mul(Ops.scalar(up, c.fixedScaling()));
        if (c.dropoutP() > 0 && training.getAsBoolean()) {
            up = ai.djl.nn.norm.Dropout.dropout(up, (float) c.dropoutP(), true).head();
        }
        if (c.gated()) { // mean over the sequence of sigmoid(gate(z)): [B, 1] -> [B, 1, 1]
            up = up.mul(io.github.peft4j.adapters.unipelt.Gate.mean(z, p("gate.weight", dt), p("gate.bias", dt),
                    gatePositions, attentionMask.get()).expandDims(1));
        }
        if (parallel && c.lnAfterOn()) {
            up = norm(up, "adapter_norm_after");
        }
        return up;
    }

    /** AdapterHub's {@code Activation_Function_Class} for the names peft4j supports (tanh besides {@link Ops#activation}). */
    static NDArray activate(String act, NDArray x) {
        return "tanh".equals(act) ? x.tanh() : Ops.activation(act, x);
    }

    private NDArray norm(NDArray x, String name) {
        return ai.djl.nn.norm.LayerNorm.layerNorm(x, new Shape(x.getShape().get(x.getShape().dimension() - 1)),
                p(name + ".weight", x.getDataType()), p(name + ".bias", x.getDataType()), ADAPTER_LN_EPS).head();
    }
}
