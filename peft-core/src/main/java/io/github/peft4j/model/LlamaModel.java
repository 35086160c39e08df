package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.WeightSource.Init;
import io.github.peft4j.nn.Attention;
import io.github.peft4j.nn.Container;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.RMSNorm;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The Llama family as a causal LM ({@code LlamaForCausalLM}, {@code MistralForCausalLM},
 * {@code Qwen2ForCausalLM}): RMSNorm, rotary position embeddings with {@code rope_theta}, grouped-query
 * attention, a SwiGLU MLP, optional q/k/v biases (Qwen2 always, Llama with {@code attention_bias}), a tied or
 * separate {@code lm_head}.
 */
public final class LlamaModel extends TransformerModel {
    /** The {@code model_type} values this class implements. */
    public static final Set<String> MODEL_TYPES = Set.of("llama", "mistral", "qwen2");
    private final int layers;
    private final int heads;
    private final int kvHeads;
    private final int hidden;
    private final int headDim;
    private final int vocab;
    private final double ropeTheta;
    private final String act;
    private final boolean tied;
    private final Container model;
    private final Embedding embedTokens;
    private NDArray ropeTable; // [maxPos, headDim/2] angles, grown on demand

    /**
     * Builds the model, taking each weight from a source.
     *
     * @param config config.json ({@code model_type} llama, mistral or qwen2)
     * @param weights the weight source
     * @param manager owns the weights
     * @param dtype compute dtype
     */
    public LlamaModel(HfConfig config, WeightSource weights, NDManager manager, DataType dtype) {
        super(config, manager, dtype);
        String type = config.modelType();
        layers = config.integer("num_hidden_layers");
        heads = config.integer("num_attention_heads");
        kvHeads = config.integer("num_key_value_heads", heads);
        hidden = config.integer("hidden_size");
        vocab = config.integer("vocab_size");
        headDim = config.integer("head_dim", hidden / heads);
        setDims(new Dims(layers, heads, kvHeads, hidden, headDim, vocab));
        config.check(heads % kvHeads == 0, "num_key_value_heads", "a divisor of num_attention_heads (" + heads + ")");
        ropeTheta = config.number("rope_theta", 10000.0);
        act = config.string("hidden_act", "silu");
        config.check(Ops.isSupportedActivation(act), "hidden_act", "one of silu, gelu, gelu_new, relu");
        if (config.has("rope_scaling")) {
            throw new PeftException(config.source() + ": key 'rope_scaling' = " + config.json().get("rope_scaling")
                    + " is not supported yet (only unscaled RoPE)");
        }
        tied = config.bool("tie_word_embeddings", false); // LlamaConfig, MistralConfig, Qwen2Config default
        boolean qkvBias = "qwen2".equals(type) || config.bool("attention_bias", false);
        boolean oBias = !"qwen2".equals(type) && config.bool("attention_bias", false);
        boolean mlpBias = config.bool("mlp_bias", false);
        int inter = config.integer("intermediate_size");
        double eps = config.number("rms_norm_eps", 1e-6);

        model = add("model", new Container());
        embedTokens = model.put("embed_tokens", new Embedding(weights.get("model.embed_tokens.weight", new Shape(vocab, hidden), Init.NORMAL)));
        Container ls = model.put("layers", new Container());
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".";
            Block b = ls.put(Integer.toString(i), new Block());
            b.put("input_layernorm", new RMSNorm(weights.get(p + "input_layernorm.weight", new Shape(hidden), Init.ONES), eps));
            Container attn = b.put("self_attn", new Container());
            attn.put("q_proj", linear(weights, p + "self_attn.q_proj.", hidden, heads * headDim, qkvBias));
            attn.put("k_proj", linear(weights, p + "self_attn.k_proj.", hidden, kvHeads * headDim, qkvBias));
            attn.put("v_proj", linear(weights, p + "self_attn.v_proj.", hidden, kvHeads * headDim, qkvBias));
            attn.put("o_proj", linear(weights, p + "self_attn.o_proj.", heads * headDim, hidden, oBias));
            b.put("post_attention_layernorm", new RMSNorm(weights.get(p + "post_attention_layernorm.weight", new Shape(hidden), Init.ONES), eps));
            Container mlp = b.put("mlp", new Container());
            mlp.put("gate_proj", linear(weights, p + "mlp.gate_proj.", hidden, inter, mlpBias));
            mlp.put("up_proj", linear(weights, p + "mlp.up_proj.", hidden, inter, mlpBias));
            mlp.put("down_proj", linear(weights, p + "mlp.down_proj.", inter, hidden, mlpBias));
        }
        model.put("norm", new RMSNorm(weights.get("model.norm.weight", new Shape(hidden), Init.ONES), eps));
        if (!tied) {
            add("lm_head", weights.linear("lm_head", hidden, vocab, false));
        }
    }

    private static Module linear(WeightSource w, String p, int in, int out, boolean bias) {
        return w.linear(p.substring(0, p.length() - 1), in, out, bias); // a Linear, or a 4-bit one when quantised
    }

    /** One decoder layer. */
    private final class Block extends Container {
        /**
         * x {@code [B, S, hidden]}; cos/sin {@code [B|1, 1, S, headDim]}; pastK/pastV this layer's cached keys and
         * values or null; kvOut, when not null, receives the keys and values including the new positions.
         */
        NDArray forward(int i, NDArray x, NDArray mask, NDArray cos, NDArray sin, NDArray scale, NDArray pastK,
                NDArray pastV, NDArray[] kvOut) {
            long b = x.getShape().get(0);
            long s = x.getShape().get(1);
            NDArray h = layer("input_layernorm").forward(x);
            NDArray q = layer("self_attn.q_proj").forward(h).reshape(b, s, heads, headDim).swapAxes(1, 2);
            NDArray k = layer("self_attn.k_proj").forward(h).reshape(b, s, kvHeads, headDim).swapAxes(1, 2);
            NDArray v = layer("self_attn.v_proj").forward(h).reshape(b, s, kvHeads, headDim).swapAxes(1, 2);
            q = rotate(q, cos, sin);
            k = rotate(k, cos, sin);
            if (pastK != null) {
                k = pastK.concat(k, 2);
                v = pastV.concat(v, 2);
            }
            if (kvOut != null) {
                kvOut[0] = k;
                kvOut[1] = v;
            }
            NDArray[] attnKv = {k, v};
            mask = site(SiteRole.KV_PREFIX, i).prependPrefixes(h, attnKv, mask);
            NDArray ctx = Attention.attend(q, attnKv[0], attnKv[1], mask, scale, null);
            NDArray a = layer("self_attn.o_proj").forward(ctx);
            x = endSubBlock(true, i, h, a, x);
            h = layer("post_attention_layernorm").forward(x);
            NDArray gated = Ops.gated(act, layer("mlp.gate_proj").forward(h), layer("mlp.up_proj").forward(h));
            NDArray f = layer("mlp.down_proj").forward(gated);
            return endSubBlock(false, i, h, f, x);
        }
    }

    /** {@code x cos + rotate_half(x) sin}, rotate_half(x) = cat(-x2, x1) over the last axis. */
    private static NDArray rotate(NDArray x, NDArray cos, NDArray sin) {
        if (io.github.peft4j.nn.FusedOps.enabled()) {
            return io.github.peft4j.nn.FusedOps.rope(x, cos, sin);
        }
        long half = x.getShape().get(3) / 2;
        NDArray x1 = x.get(new NDIndex("..., :{}", half));
        NDArray x2 = x.get(new NDIndex("..., {}:", half));
        NDArray rotated = x2.neg().concat(x1, -1);
        return x.mul(cos).add(rotated.mul(sin));
    }

    /** Angles {@code pos * inv_freq} for positions 0..n-1, in fp32 as transformers computes them. */
    private NDArray ropeAngles(long needed) {
        if (ropeTable == null || ropeTable.getShape().get(0) < needed) {
            long n = Math.max(needed, config().integer("max_position_embeddings", 2048));
            int half = headDim / 2;
            float[] invFreq = new float[half];
            for (int i = 0; i < half; i++) {
                invFreq[i] = (float) (1.0 / Math.pow(ropeTheta, (float) (2 * i) / headDim));
            }
            float[] table = new float[(int) (n * half)];
            for (int p = 0; p < n; p++) {
                for (int i = 0; i < half; i++) {
                    table[p * half + i] = (float) p * invFreq[i];
                }
            }
            NDArray owned = Ops.owned(manager(), table, new Shape(n, half)); // independent of the Java array
            ai.djl.ndarray.NDScope.unregister(owned); // lives with the model, not with the caller's step scope
            if (ropeTable != null) {
                ropeTable.close();
            }
            ropeTable = owned;
        }
        return ropeTable;
    }

    @Override
    public ModelOutput forward(ModelInput in) {
        long b = in.batchSize();
        long s = in.seqLen();
        long past = in.pastLength();
        NDArray x = in.inputsEmbeds() != null ? onDevice(in.inputsEmbeds()) : embed(onDevice(in.inputIds()));
        x = site(SiteRole.EMBEDDING_OUTPUT, -1).apply(x, x, null);
        NDArray pos = in.positionIds() != null ? onDevice(in.positionIds()) : defaultPositions(past, s);
        NDArray angles = ai.djl.nn.core.Embedding.embedding(pos, ropeAngles(past + s), ai.djl.ndarray.types.SparseFormat.DENSE).head(); // [B|1, S, D/2]
        NDArray emb = angles.concat(angles, -1).expandDims(1); // [B|1, 1, S, D]
        NDArray cos = emb.cos().toType(x.getDataType(), false);
        NDArray sin = emb.sin().toType(x.getDataType(), false);
        NDArray mask = Attention.causalMask(manager(), b, s, past, onDevice(in.attentionMask()), x.getDataType());
        NDArray scale = Ops.scalar(x, 1.0 / Math.sqrt(headDim));
        Module ls = model.child("layers");
        List<NDArray> keys = new ArrayList<>();
        List<NDArray> values = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            Block block = (Block) ls.child(Integer.toString(i));
            int layer = i;
            NDArray pastK = in.past() == null ? null : in.past().keys(i);
            NDArray pastV = in.past() == null ? null : in.past().values(i);
            NDArray[] kv = in.useCache() ? new NDArray[2] : null;
            x = runBlock(i, x, in.useCache(), h -> block.forward(layer, h, mask, cos, sin, scale, pastK, pastV, kv));
            if (kv != null) {
                keys.add(kv[0]);
                values.add(kv[1]);
            }
        }
        x = model.layer("norm").forward(x);
        NDArray logits = tied ? ai.djl.nn.core.Linear.linear(x, embedTokens.weight().array()).head() : layer("lm_head").forward(x);
        return new ModelOutput(logits, x, in.useCache() ? new KvCache(keys, values) : null);
    }

    /** @return true for a SiLU MLP: {@code silu(gate) * up} keeps neither {@code σ(gate)} nor {@code silu(gate)} */
    @Override
    public boolean recordsThroughTape() {
        return "silu".equals(act) || "swish".equals(act);
    }

    @Override
    public String architecture() {
        return switch (config().modelType()) {
            case "mistral" -> "MistralForCausalLM";
            case "qwen2" -> "Qwen2ForCausalLM";
            default -> "LlamaForCausalLM";
        };
    }

    @Override
    public TaskType task() {
        return TaskType.CAUSAL_LM;
    }

    @Override
    public String wordEmbeddingsPath() {
        return "model.embed_tokens";
    }

    @Override
    public List<String> outputHeadPaths() {
        return List.of("lm_head");
    }
}
