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
import io.github.peft4j.nn.Dropout;
import io.github.peft4j.nn.Embedding;
import io.github.peft4j.nn.LayerNorm;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import java.util.List;

/**
 * BERT: the bare encoder ({@code BertModel}, feature extraction), or with a sequence-classification head
 * ({@code BertForSequenceClassification}: pooler then {@code classifier}) or a token-classification head
 * ({@code BertForTokenClassification}: {@code classifier} on every position, no pooler). With a head, the
 * encoder lives under {@code bert.}; the bare encoder has no prefix, as in transformers. A checkpoint without
 * the pooler (sentence-transformers models) loads with an initialised pooler and a warning, as in transformers.
 *
 * <p>A {@link ModelInput#past() past} (prefix tuning's key/value prefix of {@code n} positions) is put before
 * every layer's keys and values, the attention mask then covers {@code n + S} keys, and the default positions
 * start at {@code n}, as in transformers' BERT given {@code past_key_values}. BERT does no incremental decoding:
 * no cache is returned.
 */
public final class BertModel extends TransformerModel {
    private final TaskType task;
    private final String prefix;
    private final int layers;
    private final int heads;
    private final int hidden;
    private final int vocab;
    private final int maxPositions;
    private final String act;
    private final Module bert;

    /**
     * Builds the model, taking each weight from a source.
     *
     * @param config config.json ({@code model_type} bert)
     * @param task SEQ_CLS, TOKEN_CLS or FEATURE_EXTRACTION
     * @param weights the weight source (head weights may be missing: they are then initialised)
     * @param manager owns the weights
     * @param dtype compute dtype
     */
    public BertModel(HfConfig config, TaskType task, WeightSource weights, NDManager manager, DataType dtype) {
        super(config, manager, dtype);
        if (task == TaskType.CAUSAL_LM) {
            throw new PeftException(config.source() + ": BERT is an encoder; it has no causal-LM head");
        }
        this.task = task;
        prefix = task == TaskType.FEATURE_EXTRACTION ? "" : "bert.";
        layers = config.integer("num_hidden_layers");
        heads = config.integer("num_attention_heads");
        hidden = config.integer("hidden_size");
        vocab = config.integer("vocab_size");
        setDims(new Dims(layers, heads, heads, hidden, hidden / heads, vocab));
        maxPositions = config.integer("max_position_embeddings");
        config.check(hidden % heads == 0, "hidden_size", "a multiple of num_attention_heads (" + heads + ")");
        String posType = config.string("position_embedding_type", "absolute");
        config.check("absolute".equals(posType), "position_embedding_type", "\"absolute\"");
        act = config.string("hidden_act", "gelu");
        config.check(Ops.isSupportedActivation(act), "hidden_act", "one of gelu, gelu_new, relu, silu");
        int inter = config.integer("intermediate_size");
        float eps = (float) config.number("layer_norm_eps", 1e-12);
        float hDrop = (float) config.number("hidden_dropout_prob", 0.1);
        float aDrop = (float) config.number("attention_probs_dropout_prob", 0.1);
        String p = prefix;

        bert = prefix.isEmpty() ? this : add("bert", new Container());
        Container emb = put(bert, "embeddings", new Container());
        emb.put("word_embeddings", new Embedding(weights.get(p + "embeddings.word_embeddings.weight", new Shape(vocab, hidden), Init.NORMAL)));
        emb.put("position_embeddings", new Embedding(weights.get(p + "embeddings.position_embeddings.weight", new Shape(maxPositions, hidden), Init.NORMAL)));
        emb.put("token_type_embeddings", new Embedding(weights.get(p + "embeddings.token_type_embeddings.weight",
                new Shape(config.integer("type_vocab_size", 2), hidden), Init.NORMAL)));
        emb.put("LayerNorm", ln(weights, p + "embeddings.LayerNorm.", eps));
        emb.put("dropout", new Dropout(hDrop));
        Container layerList = put(bert, "encoder", new Container()).put("layer", new Container());
        for (int i = 0; i < layers; i++) {
            String q = p + "encoder.layer." + i + ".";
            Container l = layerList.put(Integer.toString(i), new Container());
            Container self = l.put("attention", new Container()).put("self", new Container());
            self.put("query", linear(weights, q + "attention.self.query.", hidden, hidden));
            self.put("key", linear(weights, q + "attention.self.key.", hidden, hidden));
            self.put("value", linear(weights, q + "attention.self.value.", hidden, hidden));
            self.put("dropout", new Dropout(aDrop));
            Container ao = ((Container) l.child("attention")).put("output", new Container());
            ao.put("dense", linear(weights, q + "attention.output.dense.", hidden, hidden));
            ao.put("LayerNorm", ln(weights, q + "attention.output.LayerNorm.", eps));
            ao.put("dropout", new Dropout(hDrop));
            l.put("intermediate", new Container()).put("dense", linear(weights, q + "intermediate.dense.", hidden, inter));
            Container out = l.put("output", new Container());
            out.put("dense", linear(weights, q + "output.dense.", inter, hidden));
            out.put("LayerNorm", ln(weights, q + "output.LayerNorm.", eps));
            out.put("dropout", new Dropout(hDrop));
        }
        for (int i = 0; i < layers; i++) { // the LayerNorm after each site's residual add (post-LN), read by slot
            Module l = layerList.child(Integer.toString(i));
            java.util.function.UnaryOperator<NDArray> attnNorm = x -> l.layer("attention.output.LayerNorm").forward(x);
            java.util.function.UnaryOperator<NDArray> ffnNorm = x -> l.layer("output.LayerNorm").forward(x);
            site(SiteRole.ATTENTION_OUTPUT, i).setPostNorm(attnNorm);
            site(SiteRole.ATTENTION_PARALLEL, i).setPostNorm(attnNorm);
            site(SiteRole.FFN_OUTPUT, i).setPostNorm(ffnNorm);
            site(SiteRole.FFN_PARALLEL, i).setPostNorm(ffnNorm);
        }
        if (task != TaskType.TOKEN_CLS) {
            // Sentence-transformers exports (e.g. all-MiniLM-L6-v2) have no pooler; transformers then initialises
            // it with a warning, and so do we (it is unused for feature extraction, trained with a new head).
            put(bert, "pooler", new Container()).put("dense", weights.headLinear(p + "pooler.dense", hidden, hidden));
        }
        if (task != TaskType.FEATURE_EXTRACTION) {
            int labels = config.numLabels();
            double cd = config.has("classifier_dropout") ? config.number("classifier_dropout", hDrop) : hDrop;
            add("dropout", new Dropout((float) cd));
            add("classifier", weights.headLinear("classifier", hidden, labels));
        }
    }

    private <T extends Module> T put(Module parent, String name, T child) {
        return parent == this ? add(name, child) : ((Container) parent).put(name, child);
    }

    private LayerNorm ln(WeightSource w, String p, float eps) {
        return new LayerNorm(w.get(p + "weight", new Shape(hidden), Init.ONES), w.get(p + "bias", new Shape(hidden), Init.ZEROS), eps);
    }

    private static Module linear(WeightSource w, String p, int in, int out) {
        return w.linear(p.substring(0, p.length() - 1), in, out, true); // a Linear, or a 4-bit one when quantised
    }

    @Override
    public ModelOutput forward(ModelInput in) {
        long b = in.batchSize();
        long s = in.seqLen();
        long past = in.pastLength();
        if (past + s > maxPositions) {
            throw new PeftException("sequence of " + (past + s) + " positions exceeds max_position_embeddings "
                    + maxPositions + " of " + config().source());
        }
        NDArray x = in.inputsEmbeds() != null ? onDevice(in.inputsEmbeds()) : embed(onDevice(in.inputIds()));
        NDArray pos = in.positionIds() != null ? onDevice(in.positionIds()) : defaultPositions(past, s);
        NDArray types = in.tokenTypeIds() != null ? onDevice(in.tokenTypeIds())
                : manager().zeros(new Shape(b, s), DataType.INT64);
        x = x.add(bert.layer("embeddings.position_embeddings").forward(pos))
                .add(bert.layer("embeddings.token_type_embeddings").forward(types));
        NDArray tokens = x;
        x = bert.layer("embeddings.dropout").forward(bert.layer("embeddings.LayerNorm").forward(x));
        x = site(SiteRole.EMBEDDING_OUTPUT, -1).apply(tokens, x, null);
        KvCache prefixKv = in.past();
        if (prefixKv != null && prefixKv.numLayers() != layers) {
            throw new PeftException("past keys/values for " + prefixKv.numLayers() + " layers, but " + config().source()
                    + " has num_hidden_layers " + layers);
        }
        NDArray keyMask = in.attentionMask() != null ? onDevice(in.attentionMask()) : ones(b, past + s);
        if (keyMask.getShape().get(1) != past + s) {
            throw new PeftException("attention_mask has " + keyMask.getShape().get(1) + " positions, expected past + new = "
                    + past + " + " + s);
        }
        NDArray mask = Attention.paddingMask(keyMask, x.getDataType());
        NDArray scale = Ops.scalar(x, 1.0 / Math.sqrt(hidden / (double) heads));
        for (int i = 0; i < layers; i++) {
            int layer = i;
            x = runBlock(i, x, false, h -> encoderLayer(layer, h, mask, scale, prefixKv));
        }
        NDArray logits;
        switch (task) {
            case SEQ_CLS:
                logits = layer("classifier").forward(layer("dropout").forward(pooled(x)));
                break;
            case TOKEN_CLS:
                logits = layer("classifier").forward(layer("dropout").forward(x));
                break;
            default:
                logits = null;
        }
        return new ModelOutput(logits, x, null);
    }

    /** Encoder layer i: {@code [B, S, hidden]} to {@code [B, S, hidden]}; prefixKv is prefix tuning's cache or null. */
    private NDArray encoderLayer(int i, NDArray x, NDArray mask, NDArray scale, KvCache prefixKv) {
        Module l = bert.resolve("encoder.layer").child(Integer.toString(i));
        NDArray q = splitHeads(l.layer("attention.self.query").forward(x));
        NDArray k = splitHeads(l.layer("attention.self.key").forward(x));
        NDArray v = splitHeads(l.layer("attention.self.value").forward(x));
        if (prefixKv != null) { // prefix tuning: transformers' BertSelfAttention puts the cache's keys first
            k = onDevice(prefixKv.keys(i)).concat(k, 2);
            v = onDevice(prefixKv.values(i)).concat(v, 2);
        }
        NDArray[] attnKv = {k, v};
        NDArray layerMask = site(SiteRole.KV_PREFIX, i).prependPrefixes(x, attnKv, mask);
        NDArray ctx = Attention.attend(q, attnKv[0], attnKv[1], layerMask, scale, (Dropout) l.resolve("attention.self.dropout"));
        NDArray a = l.layer("attention.output.dropout").forward(l.layer("attention.output.dense").forward(ctx));
        x = endSubBlock(true, i, x, a, x); // the sites' finish: attention.output.LayerNorm(a + x)
        NDArray m = Ops.activation(act, l.layer("intermediate.dense").forward(x));
        m = l.layer("output.dropout").forward(l.layer("output.dense").forward(m));
        return endSubBlock(false, i, x, m, x); // output.LayerNorm(m + x)
    }

    /**
     * The pooler: {@code tanh(dense(hidden[:, 0]))}.
     *
     * @param hiddenStates {@code [B, S, hidden]}
     * @return {@code [B, hidden]}
     */
    public NDArray pooled(NDArray hiddenStates) {
        NDArray first = hiddenStates.get(new NDIndex(":, 0, :"));
        return bert.layer("pooler.dense").forward(first).tanh();
    }

    private NDArray splitHeads(NDArray t) { // [B, S, hidden] -> [B, H, S, D]
        Shape s = t.getShape();
        return t.reshape(s.get(0), s.get(1), heads, hidden / heads).swapAxes(1, 2);
    }

    @Override
    public String architecture() {
        return switch (task) {
            case SEQ_CLS -> "BertForSequenceClassification";
            case TOKEN_CLS -> "BertForTokenClassification";
            default -> "BertModel";
        };
    }

    @Override
    public TaskType task() {
        return task;
    }

    @Override
    public String wordEmbeddingsPath() {
        return prefix + "embeddings.word_embeddings";
    }

    @Override
    public List<String> outputHeadPaths() {
        return task == TaskType.FEATURE_EXTRACTION ? List.of() : List.of("classifier");
    }
}
