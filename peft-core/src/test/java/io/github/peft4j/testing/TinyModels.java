package io.github.peft4j.testing;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.util.function.Supplier;

/** Randomly initialised tiny models (2 layers, hidden 64, vocab 128) and gradient helpers for tests. */
public final class TinyModels {
    private TinyModels() {}

    /**
     * @param json a config as JSON text
     * @return the config
     */
    public static HfConfig config(String json) {
        try {
            return new HfConfig((ObjectNode) new ObjectMapper().readTree(json), "test config");
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException(e);
        }
    }

    /** @return a tiny Llama (GQA 4/2 heads, untied head) */
    public static TransformerModel llama() {
        return llama(DataType.FLOAT32);
    }

    /**
     * @param dtype FLOAT32, or FLOAT16 for the same weights rounded to fp16
     * @return a tiny Llama (GQA 4/2 heads, untied head) in that dtype
     */
    public static TransformerModel llama(DataType dtype) {
        Engine.getInstance().setRandomSeed(7);
        return Models.random(config("{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                + "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":128,"
                + "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"initializer_range\":0.2}"), Device.cpu(), dtype, null);
    }

    /** @return a tiny GPT-2 (no dropout) */
    public static TransformerModel gpt2() {
        return gpt2(DataType.FLOAT32);
    }

    /**
     * @param dtype FLOAT32, or FLOAT16 for the same weights rounded to fp16
     * @return a tiny GPT-2 (no dropout) in that dtype
     */
    public static TransformerModel gpt2(DataType dtype) {
        Engine.getInstance().setRandomSeed(7);
        return Models.random(config("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":2,\"n_head\":4,\"vocab_size\":128,"
                + "\"n_positions\":64,\"resid_pdrop\":0,\"embd_pdrop\":0,\"attn_pdrop\":0,\"initializer_range\":0.2}"),
                Device.cpu(), dtype, null);
    }

    /**
     * @param task SEQ_CLS, TOKEN_CLS or FEATURE_EXTRACTION
     * @return a tiny BERT (no dropout, 3 labels)
     */
    public static TransformerModel bert(TaskType task) {
        return bert(task, DataType.FLOAT32);
    }

    /**
     * @param task SEQ_CLS, TOKEN_CLS or FEATURE_EXTRACTION
     * @param dtype FLOAT32, or FLOAT16 for the same weights rounded to fp16
     * @return a tiny BERT (no dropout, 3 labels) in that dtype
     */
    public static TransformerModel bert(TaskType task, DataType dtype) {
        Engine.getInstance().setRandomSeed(7);
        return Models.random(config("{\"model_type\":\"bert\",\"hidden_size\":64,\"intermediate_size\":128,"
                + "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":128,\"max_position_embeddings\":64,"
                + "\"type_vocab_size\":2,\"num_labels\":3,\"hidden_dropout_prob\":0,\"attention_probs_dropout_prob\":0,"
                + "\"initializer_range\":0.2}"), Device.cpu(), dtype, task);
    }

    /**
     * @param m where to create them
     * @param rows batch size
     * @param cols sequence length
     * @param seed the seed
     * @return random token ids in [0, 128)
     */
    public static NDArray ids(NDManager m, int rows, int cols, long seed) {
        java.util.Random r = new java.util.Random(seed);
        long[] v = new long[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = r.nextInt(128);
        }
        return m.create(v, new ai.djl.ndarray.types.Shape(rows, cols));
    }

    /**
     * Central finite difference of a scalar function with respect to one element of a parameter.
     *
     * @param p the parameter
     * @param index the flat element index
     * @param eps the step
     * @param f the scalar function (evaluated without gradient recording)
     * @return (f(p + eps) - f(p - eps)) / (2 eps)
     */
    public static double finiteDifference(Param p, int index, float eps, Supplier<Double> f) {
        float[] v = p.array().toFloatArray();
        float orig = v[index];
        v[index] = orig + eps;
        p.array().set(v);
        double plus = f.get();
        v[index] = orig - eps;
        p.array().set(v);
        double minus = f.get();
        v[index] = orig;
        p.array().set(v);
        return (plus - minus) / (2 * eps);
    }
}
