package io.github.peft4j.lora.moe;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.peft.AdapterState;
import io.github.peft4j.peft.ProjectionWrapper;
import io.github.peft4j.peft.RowGroups;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * A mixture of LoRA experts on a dense projection ({@link MoeLoraConfig}): for every active adapter,
 * {@code y += Σ_e g_e(x) · B_e A_e dropout(x) · s} with the token-level gate {@code g = renormalised top-k of
 * softmax(W_g x)}. Parameters (in memory; on disk without the adapter name):
 * <ul>
 *   <li>{@code moe_router.<adapter>.weight} {@code (E, in)}: the router, initialised as {@code nn.Linear}
 *       (uniform in {@code ±1/sqrt(in)}), no bias;</li>
 *   <li>{@code moe_lora_A.<adapter>.weight} {@code (E, r, in)}: the experts' A, each as LoRA's (uniform in
 *       {@code ±1/sqrt(in)});</li>
 *   <li>{@code moe_lora_B.<adapter>.weight} {@code (E, out, r)}: the experts' B, zeros (so the adapter starts as the
 *       base model), or uniform in {@code ±1/sqrt(r)} with {@code init_lora_weights = false}.</li>
 * </ul>
 * The router runs in fp32 on the layer input (no dropout); every expert is computed for every token and weighted by
 * its gate (zero outside the token's top-k): two matrix products, {@code z = dropout(x) [A_1; …; A_E]ᵀ} and
 * {@code (g ⊗ 1_r ⊙ z) [B_1 … B_E]ᵀ}. In training mode the layer keeps its load-balancing term of the call
 * for {@link MoeLoraAdapter#extraLoss}. The update depends on each token, so there is no weight delta to merge.
 */
public final class MoeLoraLayer extends ProjectionWrapper {
    /** In-memory name prefixes of the three tensors. */
    static final String ROUTER = "moe_router";
    static final String A = "moe_lora_A";
    static final String B = "moe_lora_B";
    private final Projection base;
    private final Map<String, Moe> adapters = new LinkedHashMap<>();

    /** One adapter's state on this layer. */
    private static final class Moe {
        final Param router;
        final Param a;
        final Param b;
        final int experts;
        final int r;
        final int topK;
        final double scaling;
        final Dropout dropout;
        /** The load-balancing term of the last forward call in training mode (0-d, on the router's path). */
        NDArray balance;

        Moe(Param router, Param a, Param b, int experts, int r, int topK, double scaling, Dropout dropout) {
            this.router = router;
            this.a = a;
            this.b = b;
            this.experts = experts;
            this.r = r;
            this.topK = topK;
            this.scaling = scaling;
            this.dropout = dropout;
        }
    }

    /**
     * @param base the projection to adapt
     * @param state the shared active-adapter state
     */
    public MoeLoraLayer(Projection base, AdapterState state) {
        super(base, state);
        this.base = base;
    }

    /**
     * Adds a mixture (initialised as the class comment says).
     *
     * @param name the adapter name
     * @param experts number of experts
     * @param topK experts per token
     * @param r rank of every expert
     * @param scaling each expert's scale ({@code lora_alpha / r})
     * @param dropout dropout on the experts' input
     * @param zeroB whether B starts at zero ({@code init_lora_weights = true})
     */
    public void addAdapter(String name, int experts, int topK, int r, double scaling, double dropout, boolean zeroB) {
        if (adapters.containsKey(name)) {
            throw new PeftException("MOE_LORA adapter '" + name + "' already on this layer");
        }
        if (topK < 1 || topK > experts) {
            throw new PeftException("MOE_LORA adapter '" + name + "': top_k " + topK + " outside [1, " + experts + "]");
        }
        NDManager m = base.manager();
        DataType dt = DataType.FLOAT32;
        long in = base.inFeatures();
        long out = base.outFeatures();
        float bound = (float) (1.0 / Math.sqrt(in));
        NDArray router = m.randomUniform(-bound, bound, new Shape(experts, in), dt);
        NDArray a = m.randomUniform(-bound, bound, new Shape(experts, r, in), dt);
        float boundB = (float) (1.0 / Math.sqrt(r));
        NDArray b = zeroB ? m.zeros(new Shape(experts, out, r), dt) : m.randomUniform(-boundB, boundB, new Shape(experts, out, r), dt);
        Param pr = register(ROUTER + "." + name + ".weight", new Param(router));
        Param pa = register(A + "." + name + ".weight", new Param(a));
        Param pb = register(B + "." + name + ".weight", new Param(b));
        Dropout d = add("moe_lora_dropout." + name, new Dropout((float) dropout));
        adapters.put(name, new Moe(pr, pa, pb, experts, r, topK, scaling, d));
    }

    @Override
    public NDArray forward(NDArray input) {
        NDArray x = base.sharedInput(input);
        NDArray y = base.forward(x);
        RowGroups groups = rowGroups(x);
        if (groups != null) { // a mixed-adapter batch: each mixture on its own rows (no balance term: inference)
            NDArray d = groups.map(x, (n, rows) -> adapters.containsKey(n) ? delta(adapters.get(n), rows, false) : null);
            return d == null ? y : y.add(d);
        }
        boolean recording = isTraining(); // the balance term is kept in training mode
        for (Map.Entry<String, Moe> e : adapters.entrySet()) {
            if (state.isActive(e.getKey())) {
                y = y.add(delta(e.getValue(), x, recording));
            }
        }
        return y;
    }

    /** {@code Σ_e g_e · B_e A_e dropout(x) · s} for {@code x (..., in)}; keeps the balance term when {@code record}. */
    private static NDArray delta(Moe m, NDArray x, boolean record) {
        DataType dt = x.getDataType();
        NDArray gate = Ops.cast(gates(m, x, record), dt); // (..., E)
        NDArray h = m.dropout.forward(x);
        long in = x.getShape().get(x.getShape().dimension() - 1);
        NDArray a = Ops.cast(m.a.array(), dt).reshape(m.experts * (long) m.r, in); // rows: expert-major
        NDArray z = Ops.linear(h, a, null); // (..., E·r)
        Shape zs = z.getShape();
        long[] split = Arrays.copyOf(zs.getShape(), zs.dimension() + 1);
        split[zs.dimension() - 1] = m.experts;
        split[zs.dimension()] = m.r;
        NDArray weighted = z.reshape(new Shape(split)).mul(gate.expandDims(-1)).reshape(zs); // g_e on expert e's r columns
        NDArray b = Ops.cast(m.b.array(), dt); // (E, out, r)
        long out = b.getShape().get(1);
        NDArray bCat = b.transpose(1, 0, 2).reshape(out, m.experts * (long) m.r); // [B_1 … B_E]
        NDArray d = Ops.linear(weighted, bCat, null);
        return d.mul(Ops.scalar(d, m.scaling));
    }

    /**
     * The gate {@code (..., E)} in fp32: softmax of the router logits, zero outside each token's top-k, renormalised
     * to sum 1. With {@code record}, also the Switch/Mixtral load-balancing term {@code E · Σ_e f_e P_e} of this
     * call: {@code f_e} the fraction of tokens that have expert e among their top-k (Σ f = top_k), {@code P_e} the
     * mean router probability of expert e, over every position of the input.
     */
    static NDArray gates(Moe m, NDArray x, boolean record) {
        NDArray x32 = Ops.cast(x, DataType.FLOAT32);
        NDArray probs = Ops.linear(x32, m.router.array(), null).softmax(-1); // (..., E)
        NDArray mask;
        if (m.topK == m.experts) {
            mask = null;
        } else {
            NDList top = probs.stopGradient().topK(m.topK, -1, true, false);
            mask = top.get(1).oneHot(m.experts, DataType.FLOAT32).sum(new int[] {-2}); // (..., E): 1 on the top-k
        }
        NDArray kept = mask == null ? probs : probs.mul(mask);
        NDArray gate = kept.div(kept.sum(new int[] {-1}, true));
        if (record) {
            NDArray flatP = probs.reshape(-1, m.experts);
            NDArray p = flatP.mean(new int[] {0}); // (E)
            NDArray f = mask == null ? flatP.onesLike().mean(new int[] {0}) : mask.reshape(-1, m.experts).mean(new int[] {0});
            NDArray s = p.mul(f).sum();
            if (m.balance != null && !m.balance.isReleased()) {
                m.balance.close(); // a term no training step took
            }
            m.balance = s.mul(Ops.scalar(s, m.experts));
            // kept past this forward call (a transformer block's scope closes when the block returns, see
            // BlockRunner): out of the scope; MoeLoraAdapter.extraLoss closes it once the loss is built
            NDScope.unregister(m.balance);
        }
        return gate;
    }

    /**
     * The router gates of an adapter for a layer input, as the forward pass computes them (for inspection and tests).
     *
     * @param name the adapter name
     * @param x the layer input {@code (..., in)}
     * @return {@code (..., E)} fp32 gates: zero outside each token's top-k, summing to 1
     */
    public NDArray gates(String name, NDArray x) {
        return gates(moe(name), x, false);
    }

    /**
     * Takes the load-balancing term the last forward call in training mode left for an adapter.
     *
     * @param name the adapter name
     * @return the 0-d term, or null when there is none (no such call since the last take)
     */
    NDArray takeBalance(String name) {
        Moe m = moe(name);
        NDArray t = m.balance;
        m.balance = null;
        return t == null || t.isReleased() ? null : t;
    }

    private Moe moe(String name) {
        Moe m = adapters.get(name);
        if (m == null) {
            throw new PeftException("no MOE_LORA adapter '" + name + "' on this layer; it has " + adapters.keySet());
        }
        return m;
    }

    @Override
    public boolean supportsRowGroups() {
        return true;
    }

    /** A mixture's update depends on each token's routing: there is no single weight delta to fold in. */
    @Override
    public boolean canMerge() {
        return false;
    }

    @Override
    public String whyNoMerge(String path) {
        return "its layer at '" + path + "' mixes LoRA experts per token (the update depends on each token's routing, so"
                + " there is no single weight delta); keep it as an adapter";
    }

    /** Refused: see {@link #canMerge()}. */
    @Override
    public void merge(String adapter) {
        moe(adapter);
        throw new PeftException(MoeLoraAdapter.NO_MERGE.formatted(adapter));
    }

    @Override
    public Set<String> adapterNames() {
        return adapters.keySet();
    }

    @Override
    public void removeAdapter(String name) {
        Moe m = adapters.remove(name);
        if (m != null) {
            unregister(ROUTER + "." + name + ".weight");
            unregister(A + "." + name + ".weight");
            unregister(B + "." + name + ".weight");
            removeChild("moe_lora_dropout." + name);
            m.router.array().close();
            m.a.array().close();
            m.b.array().close();
        }
    }
}
