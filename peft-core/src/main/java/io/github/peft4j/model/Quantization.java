package io.github.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.quant.FourBitQuantizer;
import io.github.peft4j.nn.quant.FourBitType;
import java.util.List;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * 4-bit quantisation of a model's linear layers, as transformers' {@code BitsAndBytesConfig(load_in_4bit=True)}:
 * which code (NF4 or FP4), the block size, double quantisation of the absmax values, and which modules stay dense.
 * Read from a bnb-4bit checkpoint's {@code quantization_config} ({@link #fromConfig}), or given to
 * {@link Models#load(java.nio.file.Path, HfConfig, ai.djl.Device, ai.djl.ndarray.types.DataType, TaskType,
 * HeadSource, Quantization)} to quantise a dense checkpoint while loading.
 *
 * <p>Embeddings and norms are never quantised. Which linear layers stay dense follows transformers: when
 * {@code skipModules} is null the default is {@code ["lm_head"]} (the output embedding); otherwise exactly the
 * given entries, each skipping a module whose path starts with the entry read as a regex ({@code re.match}) or
 * ends with it.
 *
 * @param type NF4 or FP4
 * @param blocksize values per block (bitsandbytes' 64 in transformers)
 * @param doubleQuant whether the absmax values are double-quantised ({@code bnb_4bit_use_double_quant})
 * @param skipModules {@code llm_int8_skip_modules}, or null for transformers' default
 */
public record Quantization(FourBitType type, int blocksize, boolean doubleQuant, List<String> skipModules) {
    /** The modules transformers keeps dense when {@code llm_int8_skip_modules} is not given (for our models). */
    public static final List<String> DEFAULT_SKIP = List.of("lm_head");

    /** Checks the block size and the skip patterns. */
    public Quantization {
        if (type == null) {
            throw new IllegalArgumentException("quantisation type is required (NF4 or FP4)");
        }
        FourBitQuantizer.checkBlocksize(blocksize);
        if (skipModules != null) {
            skipModules = List.copyOf(skipModules);
            for (String s : skipModules) {
                try {
                    Pattern.compile(s);
                } catch (PatternSyntaxException e) {
                    throw new IllegalArgumentException("llm_int8_skip_modules entry '" + s + "' is not a valid regex: "
                            + e.getDescription());
                }
            }
        }
    }

    /** @return QLoRA's setting: NF4, blocks of 64, double quantisation, default skips */
    public static Quantization nf4() {
        return new Quantization(FourBitType.NF4, FourBitQuantizer.DEFAULT_BLOCKSIZE, true, null);
    }

    /**
     * @param skip {@code llm_int8_skip_modules}
     * @return a copy with these modules kept dense
     */
    public Quantization withSkipModules(List<String> skip) {
        return new Quantization(type, blocksize, doubleQuant, skip);
    }

    /**
     * Whether a linear layer at a module path is quantised (transformers' {@code should_convert_module}).
     *
     * @param modulePath e.g. {@code model.layers.0.self_attn.o_proj}
     * @return true unless a skip entry matches
     */
    public boolean quantizes(String modulePath) {
        for (String s : skipModules != null ? skipModules : DEFAULT_SKIP) {
            if (Pattern.compile(s).matcher(modulePath).lookingAt() || modulePath.endsWith(s)) {
                return false;
            }
        }
        return true;
    }

    /**
     * The quantisation a command line asks for ({@code --quantize nf4 --double-quant}), with transformers' default
     * skips.
     *
     * @param type {@code nf4} or {@code fp4}
     * @param doubleQuant whether to double-quantise the absmax values
     * @param blocksize values per block
     * @return the quantisation
     */
    public static Quantization of(String type, boolean doubleQuant, int blocksize) {
        return new Quantization(FourBitType.of(type, "--quantize"), blocksize, doubleQuant, null);
    }

    /**
     * Replaces every 4-bit layer of a model by a dense {@link io.github.peft4j.nn.Linear} holding its dequantised
     * weight (in the model's dtype) and bias, and removes {@code quantization_config} from the model's config, so that
     * the model saves as a dense checkpoint (transformers' {@code model.dequantize()}). Call it before attaching
     * adapters; a merge afterwards is then exact instead of requantised.
     *
     * @param model a model, possibly with 4-bit layers
     * @return the number of layers dequantised
     * @throws PeftException when a 4-bit layer is already wrapped by an adapter layer
     */
    public static int dequantize(io.github.peft4j.model.TransformerModel model) {
        int n = dequantizeChildren(model, "", model.dtype());
        model.config().json().remove("quantization_config");
        return n;
    }

    private static int dequantizeChildren(io.github.peft4j.nn.Module parent, String prefix,
            ai.djl.ndarray.types.DataType dtype) {
        int n = 0;
        for (java.util.Map.Entry<String, io.github.peft4j.nn.Module> e : new java.util.ArrayList<>(
                parent.children().entrySet())) {
            String path = prefix + e.getKey();
            if (e.getValue() instanceof io.github.peft4j.nn.quant.Linear4bit q) {
                if (parent instanceof io.github.peft4j.nn.Projection) {
                    throw new PeftException("cannot dequantise '" + path + "': an adapter layer ("
                            + parent.getClass().getSimpleName() + ") wraps it; dequantise the model before attaching adapters");
                }
                ai.djl.ndarray.NDArray w = q.dequantize();
                if (w.getDataType() != dtype) {
                    ai.djl.ndarray.NDArray cast = w.toType(dtype, false);
                    w.close();
                    w = cast;
                }
                ai.djl.ndarray.NDArray b = q.bias() == null ? null : q.bias().array().duplicate();
                parent.replace(e.getKey(), new io.github.peft4j.nn.Linear(w, b));
                q.parameters().values().forEach(p -> p.array().close());
                n++;
            } else {
                n += dequantizeChildren(e.getValue(), path + ".", dtype);
            }
        }
        return n;
    }

    /**
     * The quantisation a config declares.
     *
     * @param config a model config
     * @return its 4-bit bitsandbytes quantisation, or null when it has no {@code quantization_config}
     * @throws PeftException for another quantisation method, 8-bit, or a storage type other than uint8
     */
    public static Quantization fromConfig(HfConfig config) {
        JsonNode q = config.json().get("quantization_config");
        if (q == null || q.isNull()) {
            return null;
        }
        String where = config.source() + ": quantization_config";
        String method = q.path("quant_method").asText("bitsandbytes");
        if (!"bitsandbytes".equals(method)) {
            throw new PeftException(where + ".quant_method '" + method + "' is not supported; expected bitsandbytes");
        }
        if (!q.path("load_in_4bit").asBoolean(false)) {
            throw new PeftException(where + ": only load_in_4bit is supported"
                    + (q.path("load_in_8bit").asBoolean(false) ? " (8-bit LLM.int8 checkpoints are not)" : ""));
        }
        String storage = q.path("bnb_4bit_quant_storage").asText("uint8");
        if (!"uint8".equals(storage)) {
            throw new PeftException(where + ".bnb_4bit_quant_storage '" + storage + "' is not supported; expected uint8");
        }
        FourBitType type = FourBitType.of(q.path("bnb_4bit_quant_type").asText("fp4"), where + ".bnb_4bit_quant_type");
        boolean dq = q.path("bnb_4bit_use_double_quant").asBoolean(false);
        List<String> skip = null;
        JsonNode s = q.get("llm_int8_skip_modules");
        if (s != null && !s.isNull()) {
            if (!s.isArray()) {
                throw new PeftException(where + ".llm_int8_skip_modules must be a list of strings, got " + s);
            }
            skip = new java.util.ArrayList<>();
            for (JsonNode e : s) {
                skip.add(e.asText());
            }
        }
        return new Quantization(type, FourBitQuantizer.DEFAULT_BLOCKSIZE, dq, skip);
    }

    /**
     * The {@code quantization_config} transformers writes for this quantisation (fp32 compute).
     *
     * @return the JSON object
     */
    public ObjectNode toConfigJson() {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("_load_in_4bit", true);
        o.put("_load_in_8bit", false);
        o.put("bnb_4bit_compute_dtype", "float32");
        o.put("bnb_4bit_quant_storage", "uint8");
        o.put("bnb_4bit_quant_type", type.bnbName());
        o.put("bnb_4bit_use_double_quant", doubleQuant);
        o.put("llm_int8_enable_fp32_cpu_offload", false);
        o.put("llm_int8_has_fp16_weight", false);
        if (skipModules == null) {
            o.putNull("llm_int8_skip_modules");
        } else {
            skipModules.forEach(o.putArray("llm_int8_skip_modules")::add);
        }
        o.put("llm_int8_threshold", 6.0);
        o.put("load_in_4bit", true);
        o.put("load_in_8bit", false);
        o.put("quant_method", "bitsandbytes");
        return o;
    }
}
