package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One named place in a model where methods may add computation ({@link SiteRole}). A site has no parameters and
 * is not part of the module tree, so it changes no weight name; with nothing installed, calling it is a no-op
 * that returns its argument. Hooks run in installation order, each seeing the previous one's output.
 */
public final class HookSite {
    private final SiteRole role;
    private final int layer;
    private final Map<String, SiteHook> hooks = new LinkedHashMap<>();
    private final Map<String, KvPrefixHook> prefixes = new LinkedHashMap<>();
    private final Map<String, SiteFinisher> finishers = new LinkedHashMap<>();
    /** The normalisation the model applies after the residual add of this site (post-LN models), or null. */
    private java.util.function.UnaryOperator<NDArray> postNorm;

    HookSite(SiteRole role, int layer) {
        this.role = role;
        this.layer = layer;
    }

    /** @return the role */
    public SiteRole role() {
        return role;
    }

    /** @return the transformer layer (0-based), or -1 for {@link SiteRole#EMBEDDING_OUTPUT} */
    public int layer() {
        return layer;
    }

    /**
     * Set by a post-LN model (BERT): the LayerNorm it applies to {@code output + residual} right after this site.
     *
     * @param norm the normalisation, read through the model's slot on every call
     */
    void setPostNorm(java.util.function.UnaryOperator<NDArray> norm) {
        this.postNorm = norm;
    }

    /**
     * @return whether the model applies its own normalisation to {@code output + residual} after this site (BERT's
     *     {@code attention.output.LayerNorm} and {@code output.LayerNorm}); false in pre-LN models (GPT-2, Llama)
     */
    public boolean hasPostNorm() {
        return postNorm != null;
    }

    /**
     * Applies the normalisation that follows this site's residual add (AdapterHub's {@code original_ln_before}
     * needs it inside the adapter).
     *
     * @param x {@code [B, S, hidden]}
     * @return the normalised array
     * @throws PeftException where the model has none ({@link #hasPostNorm()} false)
     */
    public NDArray postNorm(NDArray x) {
        if (postNorm == null) {
            throw new PeftException("site " + name() + " has no post-residual normalisation (a pre-LN model)");
        }
        return postNorm.apply(x);
    }

    /** @return a readable name, e.g. {@code layers.3.attention_output} */
    public String name() {
        String r = role.name().toLowerCase(java.util.Locale.ROOT);
        return layer < 0 ? r : "layers." + layer + "." + r;
    }

    /**
     * Installs a hook.
     *
     * @param owner the adapter name that owns it (one hook per adapter and site)
     * @param hook the hook
     */
    public void install(String owner, SiteHook hook) {
        if (role == SiteRole.KV_PREFIX) {
            throw new PeftException("site " + name() + " takes key/value prefixes, not output hooks");
        }
        put(hooks, owner, hook);
    }

    /**
     * Installs a key/value prefix.
     *
     * @param owner the adapter name that owns it
     * @param hook the prefix hook
     */
    public void installPrefix(String owner, KvPrefixHook hook) {
        if (role != SiteRole.KV_PREFIX) {
            throw new PeftException("site " + name() + " takes output hooks, not key/value prefixes");
        }
        put(prefixes, owner, hook);
    }

    private <T> void put(Map<String, T> map, String owner, T hook) {
        if (map.putIfAbsent(owner, hook) != null) {
            throw new PeftException("site " + name() + " already has a hook of adapter '" + owner + "'");
        }
    }

    /**
     * Installs a finisher: computation that decides how the sub-block of this site ends (see {@link #finish}).
     * Only {@link SiteRole#ATTENTION_OUTPUT} and {@link SiteRole#FFN_OUTPUT} sites finish a sub-block, for the
     * hooks of their {@code *_PARALLEL} companion too.
     *
     * @param owner the adapter name that owns it (one finisher per adapter and site)
     * @param finisher the finisher
     */
    public void installFinisher(String owner, SiteFinisher finisher) {
        if (role != SiteRole.ATTENTION_OUTPUT && role != SiteRole.FFN_OUTPUT) {
            throw new PeftException("site " + name() + " finishes no sub-block (finishers go to attention_output or"
                    + " ffn_output sites)");
        }
        if (finishers.putIfAbsent(owner, finisher) != null) {
            throw new PeftException("site " + name() + " already has a finisher of adapter '" + owner + "'");
        }
    }

    /**
     * Removes what an adapter installed here (nothing if it installed nothing).
     *
     * @param owner the adapter name
     */
    public void uninstall(String owner) {
        hooks.remove(owner);
        prefixes.remove(owner);
        finishers.remove(owner);
    }

    /** @return the adapters with something installed here */
    public List<String> owners() {
        java.util.Set<String> out = new java.util.LinkedHashSet<>(hooks.keySet());
        out.addAll(prefixes.keySet());
        out.addAll(finishers.keySet());
        return List.copyOf(out);
    }

    /** @return whether nothing is installed */
    public boolean isEmpty() {
        return hooks.isEmpty() && prefixes.isEmpty() && finishers.isEmpty();
    }

    /**
     * Ends the sub-block of this site: what the model computes from the sub-block's output (after every hook) and
     * the residual stream. Without finishers it is the model's own step, {@link #standardFinish}. Finishers run from
     * the last installed to the first: each either decides itself (on all rows or on its own rows of a
     * mixed-adapter batch) or passes on to the ones installed before it, so the last active one decides, as the
     * last adapter of AdapterHub's {@code Stack} does in its {@code post_forward}.
     *
     * @param output the sub-block output {@code [B, S, hidden]}
     * @param residual the residual stream {@code [B, S, hidden]}
     * @return the layer's stream after this sub-block {@code [B, S, hidden]}
     */
    public NDArray finish(NDArray output, NDArray residual) {
        java.util.function.BinaryOperator<NDArray> standard = this::standardFinish;
        java.util.function.BinaryOperator<NDArray> chain = standard;
        for (SiteFinisher f : finishers.values()) {
            java.util.function.BinaryOperator<NDArray> previous = chain;
            chain = (o, r) -> f.finish(o, r, standard, previous);
        }
        return chain.apply(output, residual);
    }

    /**
     * The model's own end of the sub-block: {@code output + residual}, then the model's normalisation in post-LN
     * models ({@link #hasPostNorm()}: BERT's LayerNorm).
     *
     * @param output the sub-block output {@code [B, S, hidden]}
     * @param residual the residual stream {@code [B, S, hidden]}
     * @return the finished stream
     */
    public NDArray standardFinish(NDArray output, NDArray residual) {
        NDArray sum = output.add(residual);
        return postNorm == null ? sum : postNorm.apply(sum);
    }

    /**
     * Runs the output hooks.
     *
     * @param input the sub-block input
     * @param output its output
     * @param residual the residual stream, or null
     * @return the output after every hook ({@code output} itself when none is installed)
     */
    public NDArray apply(NDArray input, NDArray output, NDArray residual) {
        NDArray out = output;
        for (SiteHook h : hooks.values()) {
            out = h.apply(input, out, residual);
        }
        return out;
    }

    /**
     * Prepends the installed prefixes to one layer's keys and values and widens the additive mask to match (the
     * prefix positions are visible to every query).
     *
     * @param hidden the layer's attention input {@code [B, S, hidden]}
     * @param kv keys and values {@code [B, kvHeads, K, D]}, replaced in place by the widened ones
     * @param mask the additive mask {@code [B|1, 1, Q, K]} or null
     * @return the widened mask (or {@code mask} when no prefix acts)
     */
    public NDArray prependPrefixes(NDArray hidden, NDArray[] kv, NDArray mask) {
        for (KvPrefixHook h : prefixes.values()) {
            KvPrefixHook.Prefix p = h.prefix(hidden);
            if (p == null) {
                continue;
            }
            long n = p.keys().getShape().get(2);
            kv[0] = io.github.peft4j.nn.Ops.cast(p.keys(), kv[0].getDataType()).concat(kv[0], 2);
            kv[1] = io.github.peft4j.nn.Ops.cast(p.values(), kv[1].getDataType()).concat(kv[1], 2);
            if (mask != null) {
                Shape s = mask.getShape();
                mask = mask.getManager().zeros(new Shape(s.get(0), s.get(1), s.get(2), n), mask.getDataType()).concat(mask, 3);
            }
        }
        return mask;
    }
}
