package io.github.peft4j.prompt;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PromptAdapter;
import io.github.peft4j.peft.PromptLearningConfig;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What prompt-learning adapters share: parameters kept outside the model under HF's in-memory names
 * ({@code prompt_encoder.<adapter>.embedding.weight}, ...), all in fp32 (trainable leaves; the output is cast
 * differentiably to the model's dtype), and the one saved tensor {@code prompt_embeddings}, which is the encoder's output
 * {@code (num_virtual_tokens, width)}.
 */
public abstract class PromptEmbeddingAdapter implements PromptAdapter {
    /** The key of the one tensor in {@code adapter_model.safetensors}. */
    public static final String KEY = "prompt_embeddings";

    private final String name;
    private final PromptLearningConfig config;
    private final TransformerModel model;
    private final Map<String, Param> params = new LinkedHashMap<>();
    private final Shape savedShape;

    /**
     * @param name the adapter name
     * @param config the config, already fitted to the model
     * @param model the base model (its manager owns the parameters)
     * @param savedShape the shape of {@code prompt_embeddings}: {@code (num_virtual_tokens, width)}
     */
    protected PromptEmbeddingAdapter(String name, PromptLearningConfig config, TransformerModel model, Shape savedShape) {
        this.name = name;
        this.config = config;
        this.model = model;
        this.savedShape = savedShape;
    }

    /**
     * Registers a parameter under {@code prompt_encoder.<adapter>.<local>}.
     *
     * @param local the name inside the encoder, e.g. {@code embedding.weight}
     * @param value an fp32 array owned by the model's manager
     * @return the (frozen) parameter; {@link io.github.peft4j.peft.PeftModel} decides whether it trains
     */
    protected Param register(String local, NDArray value) {
        Param p = new Param(value);
        params.put("prompt_encoder." + name + "." + local, p);
        return p;
    }

    /**
     * The encoder's output, on the gradient path of the parameters: what is saved and what the prompt is built from.
     *
     * @return {@code (num_virtual_tokens, width)} in fp32
     */
    protected abstract NDArray encoderOutput();

    /**
     * The parameter that {@link #loadStateDict} fills with the saved {@code prompt_embeddings}.
     *
     * @return a parameter of shape {@link #savedShape()}
     */
    protected abstract Param loadTarget();

    /** @return the base model */
    protected TransformerModel model() {
        return model;
    }

    /** @return the shape of the saved {@code prompt_embeddings} */
    public Shape savedShape() {
        return savedShape;
    }

    /**
     * Casts an encoder output to the model's compute dtype (a no-op in fp32).
     *
     * @param x an fp32 array
     * @return x in the model's dtype
     */
    protected NDArray toModelType(NDArray x) {
        return Ops.cast(x, model.dtype()); // differentiable: the gradient reaches the fp32 parameters
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public PromptLearningConfig config() {
        return config;
    }

    @Override
    public int numVirtualTokens() {
        return config.numVirtualTokens();
    }

    @Override
    public Map<String, Param> parameters() {
        return Collections.unmodifiableMap(params);
    }

    /** @return {@code {"prompt_embeddings": encoder output (n, width)}} */
    @Override
    public Map<String, NDArray> stateDict() {
        return Map.of(KEY, encoderOutput());
    }

    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        List<String> extra = new ArrayList<>(tensors.keySet());
        extra.remove(KEY);
        if (!extra.isEmpty()) {
            throw new PeftException(source + ": unexpected tensors " + extra + " for " + config.peftType()
                    + " adapter '" + name + "' (expected only '" + KEY + "' " + savedShape + ")");
        }
        NDArray t = tensors.get(KEY);
        if (t == null) {
            throw new PeftException(source + ": missing tensor '" + KEY + "' (expected shape " + savedShape + ") for "
                    + config.peftType() + " adapter '" + name + "'");
        }
        if (!t.getShape().equals(savedShape)) {
            throw new PeftException(source + ": tensor '" + KEY + "' has shape " + t.getShape() + " but "
                    + config.peftType() + " adapter '" + name + "' expects " + savedShape
                    + " (num_virtual_tokens x width of the config)");
        }
        loadTarget().set(ownedCopy(t));
    }

    /**
     * Copies an array into a new fp32 array owned by the model's manager (not by any scope).
     *
     * @param t the source (any manager, dtype or device)
     * @return the copy
     */
    protected NDArray ownedCopy(NDArray t) {
        NDArray c = t.toDevice(model.device(), true).toType(DataType.FLOAT32, true);
        c.attach(model.manager());
        NDScope.unregister(c);
        return c;
    }

    /**
     * Draws N(0, 1) in fp32 in the model's manager, as {@code torch.nn.Embedding} initialises.
     *
     * @param shape the shape
     * @return the array
     */
    protected NDArray randomNormal(Shape shape) {
        NDArray a = model.manager().randomNormal(0f, 1f, shape, DataType.FLOAT32);
        NDScope.unregister(a);
        return a;
    }

    /**
     * Draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in fp32 in the model's manager, as {@code torch.nn.Linear}
     * initialises its weight and bias.
     *
     * @param shape the shape
     * @param fanIn the layer's input features
     * @return the array
     */
    protected NDArray randomUniform(Shape shape, long fanIn) {
        float bound = (float) (1.0 / Math.sqrt(fanIn));
        NDArray a = model.manager().randomUniform(-bound, bound, shape, DataType.FLOAT32);
        NDScope.unregister(a);
        return a;
    }

    /** Frees this adapter's arrays. */
    @Override
    public void remove() {
        params.values().forEach(p -> p.array().close());
        params.clear();
    }
}
