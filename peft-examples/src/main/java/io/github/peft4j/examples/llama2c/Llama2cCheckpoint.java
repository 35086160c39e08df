package io.github.peft4j.examples.llama2c;

import io.github.peft4j.PeftException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A llama2.c {@code model.bin} (the legacy version-0 layout of Karpathy's {@code export.py}): a header of 7 int32
 * ({@code dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len}; a negative vocab size means a separate
 * classifier follows), then fp32 tensors in PyTorch's {@code [out, in]} layout, each stacked over the layers:
 * {@code tok_embeddings [vocab, dim]}, {@code rms_att [L, dim]}, {@code wq [L, dim, dim]}, {@code wk [L, kv_dim, dim]},
 * {@code wv [L, kv_dim, dim]}, {@code wo [L, dim, dim]}, {@code rms_ffn [L, dim]}, {@code w1 [L, hidden, dim]},
 * {@code w2 [L, dim, hidden]}, {@code w3 [L, hidden, dim]}, {@code rms_final [dim]}, two legacy RoPE tables
 * {@code [seq_len, head_dim / 2]} (skipped), and {@code wcls [vocab, dim]} when not shared.
 *
 * @param header the header
 * @param tensors the tensors by llama2.c name ({@code tok_embeddings}, {@code rms_att}, ..., {@code wcls} when present)
 */
public record Llama2cCheckpoint(Header header, Map<String, float[]> tensors) {
    /** The header's size in bytes. */
    public static final int HEADER_BYTES = 28;

    /**
     * The model.bin header.
     *
     * @param dim the model width
     * @param hiddenDim the FFN width
     * @param layers decoder layers
     * @param heads attention heads
     * @param kvHeads key/value heads
     * @param vocabSize tokens
     * @param shared whether the classifier is the token embedding
     * @param seqLen the trained context length
     */
    public record Header(int dim, int hiddenDim, int layers, int heads, int kvHeads, int vocabSize, boolean shared,
            int seqLen) {
        /** @return {@code dim / heads} */
        public int headDim() {
            return dim / heads;
        }

        /** @return {@code kvHeads * headDim} */
        public int kvDim() {
            return kvHeads * headDim();
        }

        /** @return the number of fp32 values after the header */
        public long floats() {
            long l = layers;
            long n = (long) vocabSize * dim + l * dim + l * dim * dim + 2 * l * kvDim() * dim + l * dim * dim + l * dim
                    + 3 * l * hiddenDim * dim + dim + (long) seqLen * headDim();
            return shared ? n : n + (long) vocabSize * dim;
        }

        /** @return the exact file size this header implies */
        public long fileBytes() {
            return HEADER_BYTES + 4 * floats();
        }
    }

    /**
     * Reads and checks the header.
     *
     * @param bytes the file (at least its first 28 bytes)
     * @param fileSize the file's size
     * @param source the file name, for messages
     * @return the header
     * @throws PeftException naming the source and field when the header is not a llama2.c one or does not fit the size
     */
    public static Header header(ByteBuffer bytes, long fileSize, String source) {
        if (fileSize < HEADER_BYTES) {
            throw new PeftException(source + ": " + fileSize + " bytes; expected a llama2.c model.bin (a 28-byte header"
                    + " of 7 int32 then fp32 weights)");
        }
        ByteBuffer b = bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        String[] names = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
        int[] v = new int[7];
        for (int i = 0; i < 7; i++) {
            v[i] = b.getInt(4 * i);
            if (v[i] == 0 || (i != 5 && v[i] < 0) || Math.abs((long) v[i]) > 1 << 20) {
                throw new PeftException(source + ": header field " + names[i] + " = " + v[i] + "; expected a positive"
                        + " size (is this a llama2.c model.bin? a version-1 file starts with the magic 0x616b3432)");
            }
        }
        if (v[0] % v[3] != 0 || (v[0] / v[3]) % 2 != 0) {
            throw new PeftException(source + ": header dim " + v[0] + " and n_heads " + v[3]
                    + "; expected dim divisible by n_heads into an even head size");
        }
        if (v[4] > v[3] || v[3] % v[4] != 0) {
            throw new PeftException(source + ": header n_kv_heads " + v[4] + "; expected a divisor of n_heads " + v[3]);
        }
        Header h = new Header(v[0], v[1], v[2], v[3], v[4], Math.abs(v[5]), v[5] > 0, v[6]);
        if (fileSize != h.fileBytes()) {
            throw new PeftException(source + ": " + fileSize + " bytes, but its header " + h + " implies "
                    + h.fileBytes() + " (" + HEADER_BYTES + " + 4 x " + h.floats() + " fp32 values); truncated or not a"
                    + " llama2.c model.bin");
        }
        return h;
    }

    /**
     * Reads a whole model.bin.
     *
     * @param bytes the file's bytes
     * @param source the file name, for messages
     * @return the checkpoint
     * @throws PeftException when the header is bad or the size does not match it
     */
    public static Llama2cCheckpoint read(ByteBuffer bytes, String source) {
        Header h = header(bytes, bytes.remaining(), source);
        FloatBuffer f = bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN).position(bytes.position() + HEADER_BYTES)
                .slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        int l = h.layers();
        int d = h.dim();
        Map<String, float[]> t = new LinkedHashMap<>();
        take(f, t, "tok_embeddings", (long) h.vocabSize() * d);
        take(f, t, "rms_att", (long) l * d);
        take(f, t, "wq", (long) l * d * d);
        take(f, t, "wk", (long) l * h.kvDim() * d);
        take(f, t, "wv", (long) l * h.kvDim() * d);
        take(f, t, "wo", (long) l * d * d);
        take(f, t, "rms_ffn", (long) l * d);
        take(f, t, "w1", (long) l * h.hiddenDim() * d);
        take(f, t, "w2", (long) l * d * h.hiddenDim());
        take(f, t, "w3", (long) l * h.hiddenDim() * d);
        take(f, t, "rms_final", d);
        f.position(f.position() + h.seqLen() * h.headDim()); // freq_cis_real and freq_cis_imag, [seq_len, head_dim/2] each
        if (!h.shared()) {
            take(f, t, "wcls", (long) h.vocabSize() * d);
        }
        return new Llama2cCheckpoint(h, t);
    }

    private static void take(FloatBuffer f, Map<String, float[]> out, String name, long n) {
        float[] a = new float[Math.toIntExact(n)];
        f.get(a);
        out.put(name, a);
    }

    /**
     * One layer's slice of a stacked tensor.
     *
     * @param name the llama2.c name
     * @param layer the layer
     * @return a copy of {@code tensor[layer]}
     */
    public float[] layer(String name, int layer) {
        float[] all = tensors.get(name);
        int per = all.length / header.layers();
        float[] out = new float[per];
        System.arraycopy(all, layer * per, out, 0, per);
        return out;
    }

    /**
     * Reorders the rows of a query or key projection {@code [heads * headDim, in]} from llama2.c's (Meta's) RoPE
     * layout, which rotates interleaved pairs {@code (2i, 2i+1)} of each head, to Hugging Face's, which rotates
     * {@code (i, i + headDim/2)}: row {@code h*headDim + p*headDim/2 + i} of the result is row {@code h*headDim + 2i + p}
     * of the input (transformers' {@code convert_llama_weights_to_hf} {@code permute}).
     *
     * @param w the weight, row-major
     * @param heads the heads in its rows
     * @param rows {@code heads * headDim}
     * @param cols the input width
     * @return the permuted weight
     */
    public static float[] permuteRope(float[] w, int heads, int rows, int cols) {
        if (w.length != (long) rows * cols || rows % heads != 0 || (rows / heads) % 2 != 0) {
            throw new IllegalArgumentException("permuteRope: " + w.length + " values, " + heads + " heads, [" + rows + ", "
                    + cols + "]");
        }
        int hd = rows / heads;
        int half = hd / 2;
        float[] out = new float[w.length];
        for (int h = 0; h < heads; h++) {
            for (int p = 0; p < 2; p++) {
                for (int i = 0; i < half; i++) {
                    System.arraycopy(w, (h * hd + 2 * i + p) * cols, out, (h * hd + p * half + i) * cols, cols);
                }
            }
        }
        return out;
    }
}
