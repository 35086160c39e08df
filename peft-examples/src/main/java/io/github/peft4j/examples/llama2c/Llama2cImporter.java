package io.github.peft4j.examples.llama2c;

import io.github.peft4j.io.AtomicFiles;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Llama2cTokenizer;
import io.github.peft4j.io.SafeTensorsWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;

/**
 * Converts a llama2.c checkpoint and tokenizer into a Hugging Face Llama directory: {@code config.json}
 * ({@code LlamaForCausalLM}, tied embeddings when the classifier is shared, {@code rms_norm_eps} 1e-5 as llama2.c
 * computes), {@code model.safetensors} (fp32, HF names, query and key rows permuted by
 * {@link Llama2cCheckpoint#permuteRope}), {@code tokenizer.json} ({@link Llama2cTokenizer#tokenizerJson()}),
 * {@code tokenizer_config.json} and {@code generation_config.json}. The directory is written under a temporary name
 * beside the target and renamed into place, so it is either complete or absent.
 */
public final class Llama2cImporter {
    private static final Random RANDOM = new Random();

    private Llama2cImporter() {}

    /**
     * What an import produced.
     *
     * @param dir the model directory
     * @param header the checkpoint's header
     * @param parameters the number of parameters written
     */
    public record Imported(Path dir, Llama2cCheckpoint.Header header, long parameters) {}

    /**
     * Converts {@code model.bin} and {@code tokenizer.bin} bytes.
     *
     * @param modelBin the checkpoint
     * @param modelSource its name, for messages
     * @param tokenizerBin the tokenizer file's bytes
     * @param tokenizerSource its name, for messages
     * @param output the directory to write
     * @param overwrite replace a non-empty {@code output}
     * @return what was written
     * @throws PeftException on a bad checkpoint or tokenizer (one line naming the file), or a non-empty output
     */
    public static Imported convert(ByteBuffer modelBin, String modelSource, byte[] tokenizerBin, String tokenizerSource,
            Path output, boolean overwrite) {
        Llama2cCheckpoint ckpt = Llama2cCheckpoint.read(modelBin, modelSource);
        Llama2cTokenizer tok = Llama2cTokenizer.parse(tokenizerBin, ckpt.header().vocabSize(), tokenizerSource);
        return write(ckpt, tok, output, overwrite);
    }

    /**
     * Writes a parsed checkpoint and tokenizer.
     *
     * @param ckpt the checkpoint
     * @param tok the tokenizer (same vocabulary size)
     * @param output the directory to write
     * @param overwrite replace a non-empty {@code output}
     * @return what was written
     */
    public static Imported write(Llama2cCheckpoint ckpt, Llama2cTokenizer tok, Path output, boolean overwrite) {
        Llama2cCheckpoint.Header h = ckpt.header();
        if (tok.vocabSize() != h.vocabSize()) {
            throw new PeftException("the tokenizer has " + tok.vocabSize() + " tokens but the checkpoint's vocab_size is "
                    + h.vocabSize());
        }
        Path target = output.toAbsolutePath().normalize();
        boolean nonEmpty = Files.isDirectory(target) && !isEmpty(target);
        if (Files.exists(target) && !Files.isDirectory(target)) {
            throw new PeftException(output + " exists and is not a directory");
        }
        if (nonEmpty && !overwrite) {
            throw new PeftException(output + " is not empty; choose a new directory or pass --overwrite to replace it");
        }
        Path parent = target.getParent();
        String suffix = Long.toHexString(RANDOM.nextLong());
        Path tmp = parent.resolve("." + target.getFileName() + ".import-" + suffix);
        long params;
        try {
            Files.createDirectories(parent);
            Files.createDirectory(tmp);
            params = writeInto(tmp, ckpt, tok);
            AtomicFiles.replaceDirectory(tmp, target);
        } catch (IOException e) {
            deleteTree(tmp);
            throw new UncheckedIOException("cannot write " + output + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            deleteTree(tmp);
            throw e;
        }
        return new Imported(output, h, params);
    }

    private static long writeInto(Path dir, Llama2cCheckpoint ckpt, Llama2cTokenizer tok) throws IOException {
        Llama2cCheckpoint.Header h = ckpt.header();
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        AtomicFiles.writeBytes(dir.resolve("config.json"), json.writeValueAsBytes(config(h)));
        ObjectNode gen = json.createObjectNode().put("bos_token_id", Llama2cTokenizer.BOS)
                .put("eos_token_id", Llama2cTokenizer.EOS);
        AtomicFiles.writeBytes(dir.resolve("generation_config.json"), json.writeValueAsBytes(gen));
        ObjectNode tc = json.createObjectNode().put("tokenizer_class", "PreTrainedTokenizerFast")
                .put("bos_token", "<s>").put("eos_token", "</s>").put("unk_token", "<unk>")
                .put("model_max_length", h.seqLen()).put("clean_up_tokenization_spaces", false);
        AtomicFiles.writeBytes(dir.resolve("tokenizer_config.json"), json.writeValueAsBytes(tc));
        AtomicFiles.writeBytes(dir.resolve("tokenizer.json"), tok.tokenizerJsonBytes());
        long params = 0;
        try (NDManager m = NDManager.newBaseManager(ai.djl.Device.cpu())) {
            Map<String, NDArray> t = new LinkedHashMap<>();
            int d = h.dim();
            int kv = h.kvDim();
            int ff = h.hiddenDim();
            t.put("model.embed_tokens.weight", m.create(ckpt.tensors().get("tok_embeddings"), new Shape(h.vocabSize(), d)));
            for (int i = 0; i < h.layers(); i++) {
                String p = "model.layers." + i + ".";
                t.put(p + "input_layernorm.weight", m.create(ckpt.layer("rms_att", i), new Shape(d)));
                t.put(p + "self_attn.q_proj.weight", m.create(
                        Llama2cCheckpoint.permuteRope(ckpt.layer("wq", i), h.heads(), d, d), new Shape(d, d)));
                t.put(p + "self_attn.k_proj.weight", m.create(
                        Llama2cCheckpoint.permuteRope(ckpt.layer("wk", i), h.kvHeads(), kv, d), new Shape(kv, d)));
                t.put(p + "self_attn.v_proj.weight", m.create(ckpt.layer("wv", i), new Shape(kv, d)));
                t.put(p + "self_attn.o_proj.weight", m.create(ckpt.layer("wo", i), new Shape(d, d)));
                t.put(p + "post_attention_layernorm.weight", m.create(ckpt.layer("rms_ffn", i), new Shape(d)));
                t.put(p + "mlp.gate_proj.weight", m.create(ckpt.layer("w1", i), new Shape(ff, d)));
                t.put(p + "mlp.down_proj.weight", m.create(ckpt.layer("w2", i), new Shape(d, ff)));
                t.put(p + "mlp.up_proj.weight", m.create(ckpt.layer("w3", i), new Shape(ff, d)));
            }
            t.put("model.norm.weight", m.create(ckpt.tensors().get("rms_final"), new Shape(d)));
            if (!h.shared()) {
                t.put("lm_head.weight", m.create(ckpt.tensors().get("wcls"), new Shape(h.vocabSize(), d)));
            }
            for (NDArray a : t.values()) {
                params += a.size();
            }
            SafeTensorsWriter.write(dir.resolve(SafeTensorsWriter.SINGLE_FILE), t, Map.of("format", "pt"));
        }
        return params;
    }

    /**
     * The {@code config.json} of a checkpoint.
     *
     * @param h the header
     * @return the config
     */
    public static ObjectNode config(Llama2cCheckpoint.Header h) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("model_type", "llama");
        c.put("hidden_size", h.dim());
        c.put("intermediate_size", h.hiddenDim());
        c.put("num_hidden_layers", h.layers());
        c.put("num_attention_heads", h.heads());
        c.put("num_key_value_heads", h.kvHeads());
        c.put("head_dim", h.headDim());
        c.put("vocab_size", h.vocabSize());
        c.put("max_position_embeddings", h.seqLen());
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", 10000.0);
        c.put("hidden_act", "silu");
        c.put("attention_bias", false);
        c.put("mlp_bias", false);
        c.put("tie_word_embeddings", h.shared());
        c.put("bos_token_id", Llama2cTokenizer.BOS);
        c.put("eos_token_id", Llama2cTokenizer.EOS);
        c.put("initializer_range", 0.02);
        c.put("torch_dtype", "float32");
        return c;
    }

    private static boolean isEmpty(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return s.findAny().isEmpty();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void deleteTree(Path dir) {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(dir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException ignored) {
                    // best effort
                }
            });
        } catch (IOException ignored) {
            // best effort
        }
    }
}
