package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.WeightSource.Init;
import io.github.peft4j.nn.Attention;
import io.github.peft4j.nn.Container;
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.LayerNorm;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import java.util.ArrayList;
import java.util.List;

/**
 * GPT-2 with its language-model head ({@code GPT2LMHeadModel}): learned positions, pre-norm blocks, Conv1D
 * projections stored {@code (in, out)}, {@code gelu_new}, the head tied to {@code transformer.wte}.
 */
public final class Gpt2Model extends TransformerModel {
    private final int layers;
    private final int heads;
    private final int hidden;
    private final int vocab;
    private final int maxPositions;
    private final String act;
    private final boolean scaleByInverseLayer;
    private final Container transformer;
    private final Embedding wte;

    /**
     * Builds the model, taking each weight from a source.
     *
     * @param config config.json ({@code model_type} gpt2)
     * @param weights the weight source
     * @param manager owns the weights
     * @param dtype compute dtype
     */
    public Gpt2Model(HfConfig config, WeightSource weights, NDManager manager, DataType dtype) {
        super(config, manager, dtype);
        layers = config.integer("n_layer");
        heads = config.integer("n_head");
        hidden = config.integer("n_embd");
        vocab = config.integer("vocab_size");
        setDims(new Dims(layers, heads, heads, hidden, hidden / heads, vocab));
        maxPositions = config.integer("n_positions");
        config.check(hidden % heads == 0, "n_embd", "a multiple of n_head (" + heads + ")");
        act = config.string("activation_function", "gelu_new");
        config.check(Ops.isSupportedActivation(act), "activation_function", "one of gelu, gelu_new, relu, silu");
        config.check(config.bool("scale_attn_weights", true), "scale_attn_weights", "true");
        scaleByInverseLayer = config.bool("scale_attn_by_inverse_layer_idx", false);
        int inner = config.integer("n_inner", 4 * hidden);
        float eps = (float) config.number("layer_norm_epsilon", 1e-5);
        float pDrop = (float) config.number("resid_pdrop", 0.1);

        transformer = add("transformer", new Container());
        wte = transformer.put("wte", new Embedding(weights.get("transformer.wte.weight", new Shape(vocab, hidden), Init.NORMAL)));
        transformer.put("wpe", new Embedding(weights.get("transformer.wpe.weight", new Shape(maxPositions, hidden), Init.NORMAL)));
        transformer.put("drop", new Dropout((float) config.number("embd_pdrop", 0.1)));
        Container h = transformer.put("h", new Container());
        for (int i = 0; i < layers; i++) {
            h.put(Integer.toString(i), new Block(weights, "transformer.h." + i + ".", inner, eps, pDrop,
                    (float) config.number("attn_pdrop", 0.1)));
        }
        transformer.put("ln_f", ln(weights, "transformer.ln_f.", eps));
    }

    private LayerNorm ln(WeightSource w, String p, float eps) {
        return new LayerNorm(w.get(p + "weight", new Shape(hidden), Init.ONES), w.get(p + "bias", new Shape(hidden), Init.ZEROS), eps);
    }

    private static Module conv(WeightSource w, String p, int in, int out) {
        return w.conv1d(p.substring(0, p.length() - 1), in, out); // a Conv1D, or a 4-bit (out, in) one when quantised
    }

    /** One transformer block: {@code ln_1, attn (c_attn, c_proj), ln_2, mlp (c_fc, c_proj)}. */
    private final class Block extends Module {
        Block(WeightSource w, String p, int inner, float eps, float pDrop, float attnDrop) {
            add("ln_1", ln(w, p + "ln_1.", eps));
            Container attn = add("attn", new Container());
            attn.put("c_attn", conv(w, p + "attn.c_attn.", hidden, 3 * hidden));
            attn.put("c_proj", conv(w, p + "attn.c_proj.", hidden, hidden));
            attn.put("attn_dropout", new Dropout(attnDrop));
            attn.put("resid_dropout", new Dropout(pDrop));
            add("ln_2", ln(w, p + "ln_2.", eps));
            Container mlp = add("mlp", new Container());
            mlp.put("c_fc", conv(w, p + "mlp.c_fc.", hidden, inner));
            mlp.put("c_proj", conv(w, p + "mlp.c_proj.", inner, hidden));
            mlp.put("dropout", new Dropout(pDrop));
        }

        /**
         * x {@code [B, S, hidden]} -> {@code [B, S, hidden]}; pastK/pastV this layer's cached keys and values or null;
         * kvOut, when not null, receives the keys and values including the new positions.
         */
        NDArray forward(int i, NDArray x, NDArray mask, NDArray scale, NDArray pastK, NDArray pastV, NDArray[] kvOut) {
            NDArray h = layer("ln_1").forward(x);
            NDArray qkv = layer("attn.c_attn").forward(h); // [B, S, 3 * hidden]
            NDList parts = qkv.split(3, 2);
            NDArray q = splitHeads(parts.get(0));
            NDArray k = splitHeads(parts.get(1));
            NDArray v = splitHeads(parts.get(2));
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
            NDArray ctx = Attention.attend(q, attnKv[0], attnKv[1], mask, scale, (Dropout) resolve("attn.attn_dropout"));
            NDArray a = layer("attn.resid_dropout").forward(layer("attn.c_proj").forward(ctx));
            x = endSubBlock(true, i, h, a, x);
            NDArray h2 = layer("ln_2").forward(x);
            NDArray m = layer("mlp.c_proj").forward(Ops.activation(act, layer("mlp.c_fc").forward(h2)));
            m = layer("mlp.dropout").forward(m);
            return endSubBlock(false, i, h2, m, x);
        }

        private NDArray splitHeads(NDArray t) { // [B, S, hidden] -> [B, H, S, D]
            Shape s = t.getShape();
            return t.reshape(s.get(0), s.get(1), heads, hidden / heads).swapAxes(1, 2);
        }
    }

    @Override
    public ModelOutput forward(ModelInput in) {
        long b = in.batchSize();
        long s = in.seqLen();
        long past = in.pastLength();
        if (past + s > maxPositions) {
            throw new io.github.peft4j.PeftException("sequence of " + (past + s) + " positions exceeds n_positions "
                    + maxPositions + " of " + config().source());
        }
        NDArray embeds = in.inputsEmbeds() != null ? onDevice(in.inputsEmbeds()) : embed(onDevice(in.inputIds()));
        NDArray pos = in.positionIds() != null ? onDevice(in.positionIds()) : defaultPositions(past, s);
        NDArray x = embeds.add(transformer.layer("wpe").forward(pos));
        x = transformer.layer("drop").forward(x);
        x = site(SiteRole.EMBEDDING_OUTPUT, -1).apply(embeds, x, null);
        NDArray mask = Attention.causalMask(manager(), b, s, past, onDevice(in.attentionMask()), x.getDataType());
        Module h = transformer.child("h");
        List<NDArray> keys = new ArrayList<>();
        List<NDArray> values = new ArrayList<>();
        for (int i = 0; i < layers; i++) {
            double scale = 1.0 / Math.sqrt(hidden / (double) heads);
            if (scaleByInverseLayer) {
                scale /= i + 1;
            }
            Block block = (Block) h.child(Integer.toString(i));
            int layer = i;
            NDArray scaleArray = Ops.scalar(x, scale);
            NDArray pastK = in.past() == null ? null : in.past().keys(i);
            NDArray pastV = in.past() == null ? null : in.past().values(i);
            NDArray[] kv = in.useCache() ? new NDArray[2] : null;
            x = runBlock(i, x, in.useCache(), y -> block.forward(layer, y, mask, scaleArray, pastK, pastV, kv));
            if (kv != null) {
                keys.add(kv[0]);
                values.add(kv[1]);
            }
        }
        x = transformer.layer("ln_f").forward(x);
        // tied head: logits = x wte^T, read through the original embedding's weight
        NDArray logits = ai.djl.nn.core.Linear.linear(x, wte.weight().array()).head();
        return new ModelOutput(logits, x, in.useCache() ? new KvCache(keys, values) : null);
    }

    @Override
    public String architecture() {
        return "GPT2LMHeadModel";
    }

    @Override
    public TaskType task() {
        return TaskType.CAUSAL_LM;
    }

    @Override
    public String wordEmbeddingsPath() {
        return "transformer.wte";
    }

    @Override
    public List<String> outputHeadPaths() {
        return List.of("lm_head");
    }
}
