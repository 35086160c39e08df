package io.github.peft4j.prompt;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;

/** Tiny random models and a causal-LM loss for the prompt-method tests. */
final class TestModels {
    static final int VOCAB = 50;

    private TestModels() {}

    /** @return a 2-layer GPT-2 with hidden 32, 4 heads, fp32 on the CPU (seeded) */
    static TransformerModel gpt2(int seed) {
        Engine.getInstance().setRandomSeed(seed);
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.put("model_type", "gpt2").put("n_layer", 2).put("n_head", 4).put("n_embd", 32).put("vocab_size", VOCAB)
                .put("n_positions", 64).put("initializer_range", 0.2);
        return Models.random(new HfConfig(c, "tiny gpt2"), Device.cpu(), DataType.FLOAT32, null);
    }

    /** @return a 2-layer Llama with hidden 32, 4 query heads and 2 key/value heads (GQA), fp32 on the CPU */
    static TransformerModel llama(int seed) {
        Engine.getInstance().setRandomSeed(seed);
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.put("model_type", "llama").put("num_hidden_layers", 2).put("num_attention_heads", 4)
                .put("num_key_value_heads", 2).put("hidden_size", 32).put("intermediate_size", 64)
                .put("vocab_size", VOCAB).put("max_position_embeddings", 64).put("initializer_range", 0.2);
        return Models.random(new HfConfig(c, "tiny llama"), Device.cpu(), DataType.FLOAT32, null);
    }

    /**
     * A fixed batch of token ids in libtorch-owned memory (not aliasing a Java array).
     *
     * @param m the manager
     * @param seed the seed of the ids
     * @param b batch size
     * @param s sequence length
     * @return {@code [b, s]} int64
     */
    static NDArray batch(ai.djl.ndarray.NDManager m, int seed, int b, int s) {
        java.util.Random r = new java.util.Random(seed);
        long[] flat = new long[b * s];
        for (int i = 0; i < flat.length; i++) {
            flat[i] = r.nextInt(VOCAB);
        }
        NDArray tmp = m.create(flat, new ai.djl.ndarray.types.Shape(b, s));
        NDArray out = tmp.duplicate();
        tmp.close();
        return out;
    }

    /**
     * Mean next-token cross-entropy over the last {@code S} positions of the logits (virtual positions of
     * prompt tuning come first and are skipped), without Java numbers on the gradient path.
     *
     * @param logits {@code [B, n + S, V]} or {@code [B, S, V]}
     * @param ids {@code [B, S]}
     * @return the scalar loss
     */
    static NDArray causalLoss(NDArray logits, NDArray ids) {
        long s = ids.getShape().get(1);
        long total = logits.getShape().get(1);
        long v = logits.getShape().get(2);
        // predictions for tokens 1..S-1 come from positions (total - S) .. total - 2
        NDArray pred = logits.get(":, " + (total - s) + ":" + (total - 1) + ", :"); // [B, S-1, V]
        NDArray target = ids.get(":, 1:").oneHot((int) v).toType(DataType.FLOAT32, false); // [B, S-1, V]
        NDArray logp = pred.logSoftmax(-1);
        NDArray picked = logp.mul(target).sum(new int[] {2}); // [B, S-1]
        return picked.mean().mul(Ops.scalar(picked, -1.0));
    }
}
