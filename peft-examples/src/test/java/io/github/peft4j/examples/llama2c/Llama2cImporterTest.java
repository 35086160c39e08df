package io.github.peft4j.examples.llama2c;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The llama2.c importer on synthetic checkpoints: header checks, the RoPE permutation, tensor placement. */
class Llama2cImporterTest {
    /** dim 8, ffn 16, 2 layers, 2 heads, 1 kv head, vocab 260 (259 special/byte tokens + " "), context 4. */
    static final int[] HEADER = {8, 16, 2, 2, 1, 260, 4};

    static ByteBuffer modelBin(int[] header, boolean shared, long seed) {
        Llama2cCheckpoint.Header h = new Llama2cCheckpoint.Header(header[0], header[1], header[2], header[3], header[4],
                header[5], shared, header[6]);
        ByteBuffer b = ByteBuffer.allocate((int) h.fileBytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 7; i++) {
            b.putInt(i == 5 && !shared ? -header[5] : header[i]);
        }
        Random r = new Random(seed);
        while (b.hasRemaining()) {
            b.putFloat((float) r.nextGaussian() * 0.3f);
        }
        return b.flip();
    }

    static byte[] tokenizerBin() {
        return io.github.peft4j.examples.llama2c.TinyLlama2c.tokenizerBin(new String[] {" "});
    }

    @Test
    void permutationMovesInterleavedPairsToHalves() {
        // 2 heads of head_dim 4, one column: within each head rows (0,1,2,3) -> (0,2,1,3)
        float[] w = {0, 1, 2, 3, 4, 5, 6, 7};
        assertArrayEquals(new float[] {0, 2, 1, 3, 4, 6, 5, 7}, Llama2cCheckpoint.permuteRope(w, 2, 8, 1));
        // transformers: w.view(heads, hd/2, 2, cols).transpose(1, 2).reshape(rows, cols), on a 1 x 6 x 3 example
        int heads = 1;
        int rows = 6;
        int cols = 3;
        float[] x = new float[rows * cols];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        float[] y = Llama2cCheckpoint.permuteRope(x, heads, rows, cols);
        for (int p = 0; p < 2; p++) {
            for (int i = 0; i < 3; i++) {
                for (int c = 0; c < cols; c++) {
                    assertEquals(x[(2 * i + p) * cols + c], y[(p * 3 + i) * cols + c]);
                }
            }
        }
        assertThrows(IllegalArgumentException.class, () -> Llama2cCheckpoint.permuteRope(new float[6], 2, 6, 1));
    }

    @Test
    void badHeadersAndSizesGiveOneLineErrors() {
        ByteBuffer good = modelBin(HEADER, true, 1);
        String m = assertThrows(PeftException.class, () -> Llama2cCheckpoint.read(good.duplicate().limit(good.limit() - 4)
                .slice(), "cut.bin")).getMessage();
        assertTrue(m.startsWith("cut.bin: ") && m.contains("implies") && !m.contains("\n"), m);
        int[] zero = HEADER.clone();
        zero[2] = 0;
        m = assertThrows(PeftException.class, () -> Llama2cCheckpoint.read(modelBin(zero, true, 1), "zero.bin")).getMessage();
        assertTrue(m.contains("n_layers = 0"), m);
        int[] odd = HEADER.clone();
        odd[3] = 4; // head size 2 is even; 8 / 3 is not whole
        odd[3] = 3;
        odd[4] = 1;
        m = assertThrows(PeftException.class, () -> Llama2cCheckpoint.read(modelBin(odd, true, 1), "odd.bin")).getMessage();
        assertTrue(m.contains("n_heads 3"), m);
        int[] kv = HEADER.clone();
        kv[4] = 3;
        m = assertThrows(PeftException.class, () -> Llama2cCheckpoint.read(modelBin(kv, true, 1), "kv.bin")).getMessage();
        assertTrue(m.contains("n_kv_heads 3"), m);
        m = assertThrows(PeftException.class, () -> Llama2cCheckpoint.read(ByteBuffer.allocate(10), "tiny.bin")).getMessage();
        assertTrue(m.contains("10 bytes"), m);
        // the tokenizer must have the checkpoint's vocabulary size
        m = assertThrows(PeftException.class, () -> Llama2cImporter.convert(modelBin(HEADER, true, 1), "m.bin",
                TinyLlama2c.tokenizerBin(new String[] {" ", "a"}), "t.bin", Path.of("/nonexistent/x"), false)).getMessage();
        assertTrue(m.startsWith("t.bin: ") && m.contains("bytes after token 259"), m);
    }

    @Test
    void convertsPlacesTensorsAndLoads(@TempDir Path tmp) throws Exception {
        for (boolean shared : new boolean[] {true, false}) {
            ByteBuffer bin = modelBin(HEADER, shared, 7);
            Llama2cCheckpoint ckpt = Llama2cCheckpoint.read(bin.duplicate(), "m.bin");
            Path out = tmp.resolve(shared ? "shared" : "separate");
            Llama2cImporter.Imported r = Llama2cImporter.convert(bin, "m.bin", tokenizerBin(), "t.bin", out, false);
            int d = 8;
            int kvd = 4;
            assertEquals(260L * d + 2 * (2L * d + 2L * d * d + 2L * kvd * d + 3L * 16 * d) + d + (shared ? 0 : 260L * d),
                    r.parameters());
            try (SafeTensorsFile f = SafeTensorsFile.open(out.resolve("model.safetensors"));
                    NDManager m = NDManager.newBaseManager()) {
                assertArrayEquals(Llama2cCheckpoint.permuteRope(ckpt.layer("wq", 1), 2, d, d),
                        f.load("model.layers.1.self_attn.q_proj.weight", m).toFloatArray());
                assertArrayEquals(Llama2cCheckpoint.permuteRope(ckpt.layer("wk", 1), 1, kvd, d),
                        f.load("model.layers.1.self_attn.k_proj.weight", m).toFloatArray());
                assertArrayEquals(ckpt.layer("wv", 0), f.load("model.layers.0.self_attn.v_proj.weight", m).toFloatArray());
                assertArrayEquals(ckpt.layer("w2", 1), f.load("model.layers.1.mlp.down_proj.weight", m).toFloatArray());
                assertArrayEquals(ckpt.layer("w3", 0), f.load("model.layers.0.mlp.up_proj.weight", m).toFloatArray());
                assertArrayEquals(ckpt.tensors().get("rms_final"), f.load("model.norm.weight", m).toFloatArray());
                assertEquals(!shared, f.contains("lm_head.weight"));
                assertFalse(Llama2cCheckpoint.permuteRope(ckpt.layer("wq", 1), 2, d, d)[d] == ckpt.layer("wq", 1)[d]);
            }
            String config = Files.readString(out.resolve("config.json"));
            assertTrue(config.contains("\"tie_word_embeddings\" : " + shared), config);
            try (TransformerModel model = Models.load(out)) { // every tensor used, none missing
                assertEquals(r.parameters(), model.numParameters());
            }
        }
        PeftException e = assertThrows(PeftException.class, () -> Llama2cImporter.convert(modelBin(HEADER, true, 7), "m.bin",
                tokenizerBin(), "t.bin", tmp.resolve("shared"), false));
        assertTrue(e.getMessage().contains("is not empty"), e.getMessage());
    }
}
