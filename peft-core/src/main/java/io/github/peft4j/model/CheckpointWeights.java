package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.Checkpoint;
import io.github.peft4j.io.TensorDType;
import io.github.peft4j.io.TensorInfo;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.quant.DynamicMap;
import io.github.peft4j.nn.quant.FourBitQuantizer;
import io.github.peft4j.nn.quant.FourBitType;
import io.github.peft4j.nn.quant.FourBitWeights;
import io.github.peft4j.nn.quant.Linear4bit;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Weights from a checkpoint: each requested name must exist with the requested shape. Tracks what was used so
 * that leftovers can be reported. A checkpoint of the bare encoder (no {@code bert.} prefix) loads into a
 * model with a head, as transformers allows: the base-model prefix is added or removed when one side lacks it.
 */
public final class CheckpointWeights implements WeightSource {
    private static final Logger LOG = LoggerFactory.getLogger(CheckpointWeights.class);
    private final Checkpoint checkpoint;
    private final String where;
    private final NDManager manager;
    private final DataType dtype;
    private final String basePrefix;
    private final RandomWeights fallback;
    private final Set<String> used = new HashSet<>();
    private final List<String> initialised = new ArrayList<>();
    private final List<String> fromHeads = new ArrayList<>();
    private HeadSource heads;
    private Quantization quantization;

    /**
     * @param checkpoint the open checkpoint
     * @param where the directory, for messages
     * @param manager owns the arrays
     * @param dtype the compute dtype
     * @param basePrefix the base-model prefix of the architecture ({@code bert}, {@code transformer}, {@code model})
     * @param initStd std of heads initialised because the checkpoint lacks them
     */
    public CheckpointWeights(Checkpoint checkpoint, String where, NDManager manager, DataType dtype,
            String basePrefix, float initStd) {
        this.checkpoint = checkpoint;
        this.where = where;
        this.manager = manager;
        this.dtype = dtype;
        this.basePrefix = basePrefix;
        this.fallback = new RandomWeights(manager, dtype, initStd);
    }

    /**
     * Takes head tensors the checkpoint lacks from another source before initialising them.
     *
     * @param source the source (an adapter's saved head), or null
     * @return this
     */
    public CheckpointWeights optHeads(HeadSource source) {
        this.heads = source;
        return this;
    }

    /**
     * Makes linear layers 4-bit where the quantisation says so: a bnb-4bit checkpoint's packed tensors are kept
     * packed, a dense checkpoint's weights are quantised while loading.
     *
     * @param q the quantisation, or null for dense layers
     * @return this
     */
    public CheckpointWeights optQuantization(Quantization q) {
        this.quantization = q;
        return this;
    }

    @Override
    public Module linear(String path, long in, long out, boolean bias) {
        return fourBitOr(path, in, out, false, false, bias ? () -> get(path + ".bias", new Shape(out), Init.ZEROS) : null,
                () -> WeightSource.super.linear(path, in, out, bias));
    }

    @Override
    public Module conv1d(String path, long in, long out) {
        return fourBitOr(path, in, out, true, false, () -> get(path + ".bias", new Shape(out), Init.ZEROS),
                () -> WeightSource.super.conv1d(path, in, out));
    }

    @Override
    public Module headLinear(String path, long in, long out) {
        return fourBitOr(path, in, out, false, true, () -> head(path + ".bias", new Shape(out), Init.ZEROS),
                () -> WeightSource.super.headLinear(path, in, out));
    }

    /**
     * A 4-bit layer where the quantisation says so (kept packed from a bnb-4bit checkpoint, or quantised from the dense
     * tensor, one tensor at a time), else the dense layer.
     *
     * @param transposed the dense tensor is stored {@code (in, out)} (Conv1D): it is transposed before quantising
     * @param head a head the checkpoint may lack (initialised, then quantised, as transformers)
     */
    private Module fourBitOr(String path, long in, long out, boolean transposed, boolean head,
            java.util.function.Supplier<NDArray> bias, java.util.function.Supplier<Module> dense) {
        String key = locate(path + ".weight");
        boolean packed = key != null && checkpoint.info(key).dtype() == TensorDType.U8;
        if (quantization == null || !quantization.quantizes(path)) {
            if (packed) {
                throw new PeftException(where + ": tensor '" + key + "' is a packed 4-bit weight, but "
                        + (quantization == null ? "the config has no quantization_config"
                                : "llm_int8_skip_modules " + quantization.skipModules() + " keeps '" + path + "' dense"));
            }
            return dense.get();
        }
        if (key == null && !head) {
            throw new PeftException(where + ": checkpoint has no tensor '" + path + ".weight' (expected shape ("
                    + (transposed ? in + ", " + out : out + ", " + in) + "))");
        }
        NDArray b = bias == null ? null : bias.get();
        return packed ? loadPacked(key, in, out, b) : quantizeOnLoad(key, path, in, out, transposed, b);
    }

    /**
     * A dense weight quantised as bitsandbytes would (transformers' load_in_4bit of a dense checkpoint): read from the
     * memory map into fp32, transposed to {@code (out, in)} for a Conv1D, quantised, and dropped.
     */
    private Linear4bit quantizeOnLoad(String key, String path, long in, long out, boolean transposed, NDArray bias) {
        float[] values;
        if (key == null) { // a head the checkpoint lacks
            try (NDArray init = head(path + ".weight", new Shape(out, in), Init.NORMAL);
                    NDArray f32 = init.toType(DataType.FLOAT32, false)) {
                values = f32.toFloatArray();
            }
        } else {
            try (NDArray dense = load(key, transposed ? new Shape(in, out) : new Shape(out, in), DataType.FLOAT32)) {
                values = dense.toFloatArray();
            }
        }
        if (transposed) {
            values = transpose(values, (int) in, (int) out);
        }
        FourBitWeights w = FourBitQuantizer.quantize(values, new long[] {out, in}, quantization.type(),
                quantization.blocksize(), quantization.doubleQuant());
        // the quant state's dtype is the one the weight had when bitsandbytes quantised it: the model's dtype
        String dtypeName = dtype == DataType.FLOAT16 ? "float16" : dtype == DataType.BFLOAT16 ? "bfloat16" : "float32";
        return Linear4bit.of(w, bias, manager, dtypeName);
    }

    /** A row-major {@code (rows, cols)} matrix transposed to {@code (cols, rows)}. */
    private static float[] transpose(float[] v, int rows, int cols) {
        float[] t = new float[v.length];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                t[c * rows + r] = v[r * cols + c];
            }
        }
        return t;
    }

    /** A bnb-4bit checkpoint's packed weight with its quant state, kept packed. */
    private Linear4bit loadPacked(String key, long in, long out, NDArray bias) {
        String stateKey = null;
        FourBitType type = null;
        for (FourBitType t : FourBitType.values()) {
            if (checkpoint.contains(key + ".quant_state.bitsandbytes__" + t.bnbName())) {
                stateKey = key + ".quant_state.bitsandbytes__" + t.bnbName();
                type = t;
            }
        }
        if (stateKey == null) {
            throw new PeftException(where + ": packed 4-bit weight '" + key + "' has no '" + key
                    + ".quant_state.bitsandbytes__nf4' (or __fp4) tensor");
        }
        JsonNode state;
        try (NDArray bytes = checkpoint.load(stateKey, manager, null)) {
            state = new ObjectMapper().readTree(new String(bytes.toByteArray(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new PeftException(where + ": tensor '" + stateKey + "' is not a JSON quant state: " + e.getMessage());
        }
        used.add(stateKey);
        String what = where + ": '" + stateKey + "'";
        if (!type.bnbName().equals(state.path("quant_type").asText())) {
            throw new PeftException(what + " has quant_type " + state.get("quant_type") + ", its name says " + type.bnbName());
        }
        JsonNode shape = state.path("shape");
        if (shape.size() != 2 || shape.get(0).asLong() != out || shape.get(1).asLong() != in) {
            throw new PeftException(what + " has shape " + shape + ", the model's config needs [" + out + ", " + in + "]");
        }
        int blocksize = state.path("blocksize").asInt(-1);
        try {
            FourBitQuantizer.checkBlocksize(blocksize);
        } catch (IllegalArgumentException e) {
            throw new PeftException(what + ": " + e.getMessage());
        }
        boolean dq = state.has("nested_offset");
        long n = out * in;
        long blocks = (n + blocksize - 1) / blocksize;
        NDArray packed = load(key, new Shape((n + 1) / 2, 1), null);
        NDArray absmax = load(key + ".absmax", new Shape(blocks), null);
        checkTable(key + ".quant_map", type.code());
        NDArray nested = null;
        float offset = 0f;
        if (dq) {
            if (state.path("nested_blocksize").asInt(FourBitQuantizer.NESTED_BLOCKSIZE) != FourBitQuantizer.NESTED_BLOCKSIZE) {
                throw new PeftException(what + " has nested_blocksize " + state.get("nested_blocksize") + "; expected 256");
            }
            nested = load(key + ".nested_absmax", new Shape((blocks + 255) / 256), null);
            checkTable(key + ".nested_quant_map", DynamicMap.values());
            offset = (float) state.get("nested_offset").asDouble();
        }
        try {
            return new Linear4bit(type, blocksize, out, in, packed, absmax, nested, offset, bias,
                    state.path("dtype").asText("float32"));
        } catch (PeftException e) {
            throw new PeftException(where + ": '" + key + "': " + e.getMessage());
        }
    }

    /** Checks that a stored code table equals ours bit for bit (custom tables are not supported). */
    private void checkTable(String key, float[] expected) {
        if (!checkpoint.contains(key)) {
            throw new PeftException(where + ": checkpoint has no tensor '" + key + "' (expected " + expected.length
                    + " fp32 values)");
        }
        try (NDArray t = load(key, new Shape(expected.length), DataType.FLOAT32)) {
            float[] found = t.toFloatArray();
            for (int i = 0; i < expected.length; i++) {
                if (Float.floatToIntBits(found[i]) != Float.floatToIntBits(expected[i])) {
                    throw new PeftException(where + ": tensor '" + key + "' differs from bitsandbytes' table at index "
                            + i + " (" + found[i] + " vs " + expected[i] + "); custom code tables are not supported");
                }
            }
        }
    }

    private String locate(String name) {
        if (checkpoint.contains(name)) {
            return name;
        }
        String prefix = basePrefix + ".";
        if (name.startsWith(prefix) && checkpoint.contains(name.substring(prefix.length()))) {
            return name.substring(prefix.length());
        }
        if (checkpoint.contains(prefix + name)) {
            return prefix + name;
        }
        return null;
    }

    @Override
    public NDArray get(String name, Shape shape, Init init) {
        String key = locate(name);
        if (key == null) {
            throw new PeftException(where + ": checkpoint has no tensor '" + name + "' (expected shape " + shape + ")");
        }
        return load(key, shape);
    }

    private NDArray load(String key, Shape shape) {
        return load(key, shape, dtype);
    }

    private NDArray load(String key, Shape shape, DataType target) {
        if (!checkpoint.contains(key)) {
            throw new PeftException(where + ": checkpoint has no tensor '" + key + "' (expected shape " + shape + ")");
        }
        long[] found = checkpoint.info(key).shape();
        if (!Arrays.equals(found, shape.getShape())) {
            throw new PeftException(where + ": tensor '" + key + "' has shape " + Arrays.toString(found)
                    + ", the model's config needs " + shape);
        }
        used.add(key);
        return checkpoint.load(key, manager, target);
    }

    @Override
    public NDArray head(String name, Shape shape, Init init) {
        String key = locate(name);
        if (key == null) {
            long[] found = heads == null ? null : heads.shape(name);
            if (found != null) {
                if (!Arrays.equals(found, shape.getShape())) {
                    throw new PeftException(heads.describe(name) + " has shape " + Arrays.toString(found) + ", the model "
                            + where + " needs " + shape + " for '" + name + "'");
                }
                fromHeads.add(name);
                return heads.load(name, manager, dtype);
            }
            initialised.add(name);
            return fallback.get(name, shape, init);
        }
        return load(key, shape);
    }

    /** @return the head tensors taken from the {@link #optHeads head source}, in model order */
    public List<String> fromHeads() {
        return List.copyOf(fromHeads);
    }

    /**
     * The head tensors the checkpoint lacked and that were initialised instead (a sentence-transformers export
     * loaded with a classification head has no pooler and no classifier).
     *
     * @return their names, in model order
     */
    public List<String> initialised() {
        return List.copyOf(initialised);
    }

    /**
     * Logs one warning naming every initialised head tensor (as transformers warns once per load), if any.
     *
     * @param architecture the model's architecture, for the message
     */
    public void warnInitialised(String architecture) {
        if (!initialised.isEmpty()) {
            LOG.warn("{}: {} tensors of {} are not in the checkpoint and were newly initialised (train them before use): {}",
                    where, initialised.size(), architecture, initialised);
        }
    }

    /**
     * Checks that every checkpoint tensor was used, except names matching {@code ignore} (buffers such as
     * {@code attn.bias} or {@code rotary_emb.inv_freq} that transformers also skips).
     *
     * @param ignore pattern of names to skip
     */
    public void checkAllUsed(Pattern ignore) {
        Set<String> left = new TreeSet<>(checkpoint.names());
        left.removeAll(used);
        left.removeIf(n -> ignore.matcher(n).matches());
        if (!left.isEmpty()) {
            LOG.warn("{}: {} checkpoint tensors not used by the model: {}", where, left.size(), left);
        }
    }
}
