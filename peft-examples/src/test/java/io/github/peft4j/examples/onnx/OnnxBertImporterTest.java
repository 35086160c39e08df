package io.github.peft4j.examples.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnx.proto.OnnxMl.AttributeProto;
import ai.onnx.proto.OnnxMl.GraphProto;
import ai.onnx.proto.OnnxMl.ModelProto;
import ai.onnx.proto.OnnxMl.NodeProto;
import ai.onnx.proto.OnnxMl.StringStringEntryProto;
import ai.onnx.proto.OnnxMl.TensorProto;
import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import io.github.peft4j.PeftException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.Consumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The importer on edited copies of the real all-MiniLM-L6-v2 graph: each unexpected layout is a clear error. */
class OnnxBertImporterTest {
    static ModelProto model;

    @BeforeAll
    static void parse() throws Exception {
        try (InputStream s = OnnxBertImporter.class.getResourceAsStream(OnnxBertImporter.BUNDLED_ONNX)) {
            CodedInputStream in = CodedInputStream.newInstance(s.readAllBytes());
            in.enableAliasing(true);
            in.setSizeLimit(Integer.MAX_VALUE);
            model = ModelProto.parseFrom(in);
        }
    }

    private static ModelProto edit(Consumer<GraphProto.Builder> change) {
        ModelProto.Builder b = model.toBuilder();
        change.accept(b.getGraphBuilder());
        return b.build();
    }

    private static int init(GraphProto.Builder g, String name) {
        for (int i = 0; i < g.getInitializerCount(); i++) {
            if (g.getInitializer(i).getName().equals(name)) {
                return i;
            }
        }
        throw new AssertionError("no initializer " + name);
    }

    private static int node(GraphProto.Builder g, String name) {
        for (int i = 0; i < g.getNodeCount(); i++) {
            if (g.getNode(i).getName().equals(name)) {
                return i;
            }
        }
        throw new AssertionError("no node " + name);
    }

    private static String error(ModelProto m) {
        return assertThrows(PeftException.class, () -> OnnxBertImporter.read(m, "edited.onnx")).getMessage();
    }

    private static void assertMentions(String message, String... parts) {
        for (String p : parts) {
            assertTrue(message.contains(p), "'" + p + "' missing from: " + message);
        }
    }

    @Test
    void externalDataIsRefusedByName() {
        String m = error(edit(g -> g.getInitializerBuilder(init(g, "onnx::MatMul_787"))
                .setDataLocation(TensorProto.DataLocation.EXTERNAL)
                .addExternalData(StringStringEntryProto.newBuilder().setKey("location").setValue("weights.bin"))));
        assertMentions(m, "edited.onnx", "'onnx::MatMul_787'", "external file", "location=weights.bin");
    }

    @Test
    void anUnknownConsumerOfAWeightNamesNodeAndInitializer() {
        String m = error(edit(g -> g.getNodeBuilder(node(g, "/encoder/layer.0/attention/self/query/MatMul")).setOpType("Conv")));
        assertMentions(m, "'/encoder/layer.0/attention/self/query/MatMul' (Conv)", "'onnx::MatMul_787' [384, 384]");
    }

    @Test
    void theHeadCountIsCrossCheckedWithTheAttentionScale() {
        String m = error(edit(g -> {
            NodeProto.Builder c = g.getNodeBuilder(node(g, "/encoder/layer.0/attention/self/Constant_12"));
            TensorProto eight = TensorProto.newBuilder().setDataType(TensorProto.DataType.FLOAT_VALUE)
                    .setRawData(ByteString.copyFrom(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(0, 8f))).build();
            c.setAttribute(0, AttributeProto.newBuilder().setName("value").setType(AttributeProto.AttributeType.TENSOR).setT(eight));
        }));
        assertMentions(m, "'/encoder/layer.0/attention/self/Div'", "1/8.0", "12 heads of 32.0");
    }

    @Test
    void headsThatCannotBeDerivedAreAnError() {
        String m = error(edit(g -> {
            for (NodeProto.Builder n : g.getNodeBuilderList()) {
                if ("Reshape".equals(n.getOpType()) && n.getName().startsWith("/encoder/layer.0/attention/self/")) {
                    n.setInput(1, "input_ids"); // a shape known only at run time
                }
            }
        }));
        assertMentions(m, "cannot derive num_attention_heads", "under /encoder/layer.0/attention/self");
    }

    @Test
    void anInitializerWhoseNameContradictsTheGraphIsAnError() {
        String wrong = "encoder.layer.0.attention.self.key.bias";
        String m = error(edit(g -> {
            String right = "encoder.layer.0.attention.self.query.bias";
            g.getInitializerBuilder(init(g, wrong)).setName("unused.renamed");
            g.getInitializerBuilder(init(g, right)).setName(wrong);
            NodeProto.Builder add = g.getNodeBuilder(node(g, "/encoder/layer.0/attention/self/query/Add"));
            add.setInput(0, wrong);
        }));
        assertMentions(m, "'" + wrong + "'", "'/encoder/layer.0/attention/self/query/Add'",
                "as 'encoder.layer.0.attention.self.query.bias'", "contradicts its own name");
    }

    @Test
    void aWeightNoNodeUsesIsReportedAndItsAbsenceIsAnError() {
        String m = error(edit(g -> g.removeNode(node(g, "/encoder/layer.5/output/LayerNorm/Mul"))));
        assertMentions(m, "no weight for [encoder.layer.5.output.LayerNorm.weight]");
    }

    @Test
    void aGemmPoolerIsImportedWithoutTranspose() {
        float[] w = new float[384 * 384];
        for (int i = 0; i < w.length; i++) {
            w[i] = (i % 997) / 997f;
        }
        ByteBuffer bytes = ByteBuffer.allocate(w.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        bytes.asFloatBuffer().put(w);
        ImportedBert b = OnnxBertImporter.read(edit(g -> {
            g.addInitializer(TensorProto.newBuilder().setName("pooler.dense.weight").addDims(384).addDims(384)
                    .setDataType(TensorProto.DataType.FLOAT_VALUE).setRawData(ByteString.copyFrom(bytes.array())));
            TensorProto.Builder bias = TensorProto.newBuilder().setName("pooler.dense.bias").addDims(384)
                    .setDataType(TensorProto.DataType.FLOAT_VALUE);
            for (int i = 0; i < 384; i++) {
                bias.addFloatData(i);
            }
            g.addInitializer(bias);
            g.addNode(NodeProto.newBuilder().setName("/pooler/dense/Gemm").setOpType("Gemm").addInput("/pooler/Gather_output_0")
                    .addInput("pooler.dense.weight").addInput("pooler.dense.bias").addOutput("/pooler/dense/Gemm_output_0")
                    .addAttribute(AttributeProto.newBuilder().setName("transB").setType(AttributeProto.AttributeType.INT).setI(1)));
            g.addInitializer(TensorProto.newBuilder().setName("stray").addDims(1).setDataType(TensorProto.DataType.FLOAT_VALUE)
                    .addFloatData(1f));
        }), "edited.onnx");
        assertTrue(b.hasPooler());
        assertArrayEquals(w, b.tensors().get("pooler.dense.weight").data());
        assertEquals(383f, b.tensors().get("pooler.dense.bias").data()[383]);
        assertEquals(java.util.List.of("embeddings.position_ids", "stray (used by no node)"), b.skipped());
    }
}
