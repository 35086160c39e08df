package io.github.peft4j.model;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.nn.Layer;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Param;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A Hugging Face transformer built from {@link Module}s whose parameter names are the checkpoint's names.
 * One subclass per architecture family; everything model-specific lives in the subclass. The model owns
 * its {@link NDManager}: closing the model frees every weight.
 */
public abstract class TransformerModel extends Module implements AutoCloseable {
    private final HfConfig config;
    private final NDManager manager;
    private final DataType dtype;

    /**
     * @param config the parsed config.json
     * @param manager the manager owning all weights (closed with the model)
     * @param dtype the compute dtype (FLOAT32, or FLOAT16 on GPU)
     */
    protected TransformerModel(HfConfig config, NDManager manager, DataType dtype) {
        this.config = config;
        this.manager = manager;
        this.dtype = dtype;
    }

    /**
     * Runs the model.
     *
     * @param input ids or embeddings, masks, cache
     * @return logits, hidden states, cache
     */
    public abstract ModelOutput forward(ModelInput input);

    /** @return the transformers class this model corresponds to, e.g. {@code LlamaForCausalLM} */
    public abstract String architecture();

    /** @return what the head computes */
    public abstract TaskType task();

    /** @return the module path of the input word embeddings, e.g. {@code model.embed_tokens} */
    public abstract String wordEmbeddingsPath();

    /** @return the module paths of output heads ({@code lm_head}, {@code classifier}), excluded from {@code all-linear} */
    public abstract List<String> outputHeadPaths();

    /**
     * The sizes every architecture reports.
     *
     * @param layers number of transformer layers
     * @param heads number of query heads
     * @param kvHeads number of key/value heads (fewer than query heads with grouped-query attention)
     * @param hidden hidden size
     * @param headDim dimension of one attention head
     * @param vocab vocabulary size
     */
    public record Dims(int layers, int heads, int kvHeads, int hidden, int headDim, int vocab) {}

    private Dims dims;
    private final Map<SiteRole, List<HookSite>> sites = new java.util.EnumMap<>(SiteRole.class);

    /**
     * Records the model's sizes and creates its {@link HookSite}s; each constructor calls it once.
     *
     * @param dims the sizes
     */
    protected final void setDims(Dims dims) {
        this.dims = dims;
        for (SiteRole role : SiteRole.values()) {
            List<HookSite> list = new java.util.ArrayList<>();
            if (role == SiteRole.EMBEDDING_OUTPUT) {
                list.add(new HookSite(role, -1));
            } else {
                for (int i = 0; i < dims.layers(); i++) {
                    list.add(new HookSite(role, i));
                }
            }
            sites.put(role, List.copyOf(list));
        }
    }

    /**
     * The sites of one role, by layer (one site for {@link SiteRole#EMBEDDING_OUTPUT}).
     *
     * @param role the role
     * @return the sites, layer 0 first
     */
    public final List<HookSite> sites(SiteRole role) {
        return sites.get(role);
    }

    /**
     * One site.
     *
     * @param role the role
     * @param layer the layer (0-based; ignored for {@link SiteRole#EMBEDDING_OUTPUT})
     * @return the site
     */
    public final HookSite site(SiteRole role, int layer) {
        List<HookSite> list = sites.get(role);
        if (role == SiteRole.EMBEDDING_OUTPUT) {
            return list.get(0);
        }
        if (layer < 0 || layer >= list.size()) {
            throw new PeftException("site " + role + ": layer " + layer + " out of range 0.." + (list.size() - 1));
        }
        return list.get(layer);
    }

    /** @return the model's sizes */
    public final Dims dims() {
        return dims;
    }

    /** @return number of transformer layers */
    public final int numLayers() {
        return dims.layers();
    }

    /** @return number of query heads */
    public final int numAttentionHeads() {
        return dims.heads();
    }

    /** @return number of key/value heads (fewer than query heads with grouped-query attention) */
    public final int numKeyValueHeads() {
        return dims.kvHeads();
    }

    /** @return hidden size */
    public final int hiddenSize() {
        return dims.hidden();
    }

    /** @return the dimension of one attention head */
    public final int headDim() {
        return dims.headDim();
    }

    /** @return vocabulary size */
    public final int vocabSize() {
        return dims.vocab();
    }

    /**
     * Looks up the word embeddings of token ids through the current embedding slot (which an adapter may wrap).
     *
     * @param inputIds {@code [B, S]} int64
     * @return {@code [B, S, hidden]}
     */
    public NDArray embed(NDArray inputIds) {
        return ((Layer) resolve(wordEmbeddingsPath())).forward(inputIds);
    }

    /**
     * Whether training without checkpointing should run this model's blocks with a
     * {@link io.github.peft4j.nn.RecomputeTape} even when it has no 4-bit layers (which record through one on any
     * model): operations whose kept activations the tape avoids ({@link io.github.peft4j.nn.Ops#gated}'s SiLU) are
     * then recomputed in backward instead.
     *
     * @return false unless the model class says otherwise
     */
    public boolean recordsThroughTape() {
        return false;
    }

    private final ThreadLocal<BlockRunner> blockRunner = new ThreadLocal<>();

    /**
     * Makes a {@link BlockRunner} run this model's blocks on the calling thread until the returned scope is closed
     * (scopes nest: closing one restores the runner before it). Calls that ask for a cache run their blocks directly.
     *
     * @param runner the runner
     * @return the scope to close
     */
    public final RunnerScope useBlockRunner(BlockRunner runner) {
        BlockRunner previous = blockRunner.get();
        blockRunner.set(runner);
        return () -> {
            if (previous == null) {
                blockRunner.remove();
            } else {
                blockRunner.set(previous);
            }
        };
    }

    /** The scope of a {@link #useBlockRunner} call; closing it restores the previous runner. */
    public interface RunnerScope extends AutoCloseable {
        @Override
        void close();
    }

    /**
     * Runs one transformer block: through the runner installed on this thread, or directly (no runner, or a call that
     * returns a cache, whose keys and values the block writes as side outputs).
     *
     * @param layer the layer index
     * @param x the block's input {@code [B, S, hidden]}
     * @param useCache whether the call returns a cache
     * @param block the block as a function of its input alone
     * @return the block's output
     */
    protected final NDArray runBlock(int layer, NDArray x, boolean useCache, java.util.function.UnaryOperator<NDArray> block) {
        BlockRunner r = blockRunner.get();
        return r == null || useCache ? block.apply(x) : r.run(layer, x, block);
    }

    /**
     * The end of one sub-block, the same in every model: the hooks of its parallel site, then those of its output
     * site, then the output site's {@link HookSite#finish} (the residual add and, in post-LN models, the norm, unless
     * an installed finisher replaces them).
     *
     * @param attention the attention sub-block (else the feed-forward one)
     * @param layer the layer index
     * @param input the sub-block's input (after the pre-norm in pre-LN models) {@code [B, S, hidden]}
     * @param output the sub-block's output {@code [B, S, hidden]}
     * @param residual the residual stream {@code [B, S, hidden]}
     * @return the stream after the sub-block
     */
    protected final NDArray endSubBlock(boolean attention, int layer, NDArray input, NDArray output, NDArray residual) {
        NDArray o = site(attention ? SiteRole.ATTENTION_PARALLEL : SiteRole.FFN_PARALLEL, layer).apply(input, output, residual);
        HookSite out = site(attention ? SiteRole.ATTENTION_OUTPUT : SiteRole.FFN_OUTPUT, layer);
        NDArray finished = out.finish(out.apply(input, o, residual), residual);
        io.github.peft4j.nn.RecomputeTape tape = attention ? io.github.peft4j.nn.RecomputeTape.active() : null;
        // with a tape, the feed-forward half reads the attention half's result through a leaf: gradients the tape
        // recomputes in the feed-forward half then reach the attention half together, in one backward through it
        return tape == null ? finished : tape.input(finished);
    }

    /** @return the parsed config */
    public HfConfig config() {
        return config;
    }

    /** @return the manager owning the weights */
    public NDManager manager() {
        return manager;
    }

    /** @return the compute dtype */
    public DataType dtype() {
        return dtype;
    }

    /** @return the device the weights live on */
    public Device device() {
        return manager.getDevice();
    }

    /**
     * The weights under their checkpoint names. Fails if a method still wraps a layer (merge and unload first).
     *
     * @return name to array, sorted by name
     */
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = new TreeMap<>();
        for (Map.Entry<String, Param> e : parameters().entrySet()) {
            String name = e.getKey();
            if (name.contains(".base_layer.") || name.contains(".original_module.")) {
                throw new PeftException("cannot save the base model while adapters wrap its layers ('" + name
                        + "'); call PeftModel.mergeAndUnload() first");
            }
            out.put(name, e.getValue().array());
        }
        return out;
    }

    /**
     * Saves as a Hugging Face model directory: {@code config.json} and {@code model.safetensors}, each written
     * to a temp file and renamed.
     *
     * @param dir the directory (created if needed)
     */
    public void save(Path dir) {
        Map<String, NDArray> weights = stateDict();
        try {
            Files.createDirectories(dir);
            String json = new com.fasterxml.jackson.databind.ObjectMapper().writerWithDefaultPrettyPrinter()
                    .writeValueAsString(config.json());
            SafeTensorsWriter.write(dir.resolve("model.safetensors"), weights, Map.of("format", "pt"));
            AtomicFiles.writeString(dir.resolve("config.json"), json + "\n");
        } catch (IOException e) {
            throw new PeftException(dir + ": cannot save model: " + e.getMessage(), e);
        }
    }

    /** @return number of distinct parameters' elements */
    public long numParameters() {
        return parameters().values().stream().distinct().mapToLong(Param::numel).sum();
    }

    /**
     * Position ids {@code past .. past + S - 1} for every row, as transformers uses when none are given.
     *
     * @param past cached positions
     * @param seq new positions
     * @return {@code [1, S]} int64 (broadcasts over the batch)
     */
    protected NDArray defaultPositions(long past, long seq) {
        return manager.arange(past, past + seq, 1, DataType.INT64).reshape(1, seq);
    }

    /**
     * Ones for a missing attention mask.
     *
     * @param batch batch size
     * @param len mask length
     * @return {@code [B, len]} int64 ones
     */
    protected NDArray ones(long batch, long len) {
        return manager.ones(new ai.djl.ndarray.types.Shape(batch, len), DataType.INT64);
    }

    /**
     * Moves an input array onto the model's device if needed.
     *
     * @param a the array or null
     * @return the array on the model's device
     */
    protected NDArray onDevice(NDArray a) {
        return a == null || a.getDevice().equals(device()) ? a : a.toDevice(device(), false);
    }

    /** @return a readable one-line summary */
    public String describe() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("architecture", architecture());
        m.put("model_type", config.modelType());
        m.put("layers", numLayers());
        m.put("hidden", hiddenSize());
        m.put("heads", numAttentionHeads() + "/" + numKeyValueHeads());
        m.put("vocab", vocabSize());
        m.put("dtype", dtype);
        m.put("device", device());
        return m.toString();
    }

    @Override
    public void close() {
        manager.close();
    }
}
