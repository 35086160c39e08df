package io.github.peft4j.adapters;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import java.util.Random;

/** Tiny random models and helpers shared by the tests. */
final class Tiny {
    static final int VOCAB = 64;

    private Tiny() {}

    /** @return a 2-layer, 32-wide random GPT-2 (biases everywhere) */
    static TransformerModel gpt2() {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.put("model_type", "gpt2");
        c.putArray("architectures").add("GPT2LMHeadModel");
        c.put("n_embd", 32);
        c.put("n_head", 4);
        c.put("n_layer", 2);
        c.put("n_positions", 32);
        c.put("vocab_size", VOCAB);
        c.put("layer_norm_epsilon", 1e-5);
        c.put("activation_function", "gelu_new");
        c.put("initializer_range", 0.2);
        return Models.random(new HfConfig(c, "tiny-gpt2"), Device.cpu(), DataType.FLOAT32, null);
    }

    /**
     * @param m where to create them
     * @param seed the seed
     * @return {@code [2, 8]} int64 token ids
     */
    static NDArray ids(NDManager m, long seed) {
        Random r = new Random(seed);
        long[] v = new long[16];
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextInt(VOCAB);
        }
        NDArray t = m.create(v, new Shape(2, 8));
        NDArray owned = t.duplicate(); // create() aliases Java memory
        t.close();
        return owned;
    }

    /**
     * @param peft the model
     * @param ids token ids
     * @return the logits
     */
    static NDArray logits(PeftModel peft, NDArray ids) {
        return peft.forward(ModelInput.of(ids, null)).logits();
    }

    /**
     * Mean next-token cross-entropy, built from ops whose constants are libtorch-owned.
     *
     * @param logits {@code [B, S, V]}
     * @param ids {@code [B, S]}
     * @return the scalar loss
     */
    static NDArray causalLoss(NDArray logits, NDArray ids) {
        long s = ids.getShape().get(1);
        NDArray pred = logits.get(":, :" + (s - 1) + ", :").logSoftmax(-1);
        NDArray target = ids.get(":, 1:").oneHot((int) logits.getShape().get(2)).toType(DataType.FLOAT32, false);
        NDArray n = Ops.scalar(pred, (double) (ids.getShape().get(0) * (s - 1)));
        return pred.mul(target).sum().neg().div(n);
    }

    /**
     * @param a an array
     * @param b another of the same shape
     * @return max |a - b|
     */
    static double diff(NDArray a, NDArray b) {
        return a.sub(b).abs().max().getFloat();
    }
}
