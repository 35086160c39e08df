package io.github.peft4j.fuzz;

import ai.onnx.proto.OnnxMl.GraphProto;
import ai.onnx.proto.OnnxMl.ModelProto;
import ai.onnx.proto.OnnxMl.TensorProto;
import com.google.protobuf.ByteString;
import io.github.peft4j.examples.onnx.OnnxBertImporter;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Writes the ONNX seed of the {@code onnx} fuzz target: the bundled all-MiniLM-L6-v2 export with the same graph and
 * every float initializer shrunk consistently (hidden 384 to 8, intermediate 1536 to 16, vocabulary 30522 to 32,
 * positions 512 to 8), so the seed is a small, importable BERT of the real export's layout. Run it from the
 * repository root with the peft-examples test classpath; the output path is its argument.
 */
public final class FuzzSeeds {
    private static final Map<Long, Long> SHRINK = Map.of(384L, 8L, 1536L, 16L, 30522L, 32L, 512L, 8L);
    /** Integer constants (reshape targets: 12 heads of 32) shrunk to 2 heads of 4. */
    private static final Map<Long, Long> INTS = Map.of(384L, 8L, 12L, 2L, 32L, 4L, 1536L, 16L);

    private FuzzSeeds() {}

    /**
     * @param args the file to write
     * @throws Exception if the bundled model cannot be read or the file cannot be written
     */
    public static void main(String[] args) throws Exception {
        ModelProto model;
        try (InputStream in = OnnxBertImporter.class.getResourceAsStream(OnnxBertImporter.BUNDLED_ONNX)) {
            model = ModelProto.parseFrom(in);
        }
        GraphProto.Builder g = model.getGraph().toBuilder();
        for (int i = 0; i < g.getInitializerCount(); i++) {
            TensorProto t = g.getInitializer(i);
            if (t.getDataType() == TensorProto.DataType.INT64_VALUE) {
                g.setInitializer(i, shrinkInts(t));
                continue;
            }
            if (t.getDataType() != TensorProto.DataType.FLOAT_VALUE) {
                continue;
            }
            if (t.getDimsList().stream().reduce(1L, (x, y) -> x * y) <= 1) {
                g.setInitializer(i, shrinkScale(t));
                continue;
            }
            TensorProto.Builder b = t.toBuilder().clearDims().clearRawData().clearFloatData();
            long n = 1;
            for (long d : t.getDimsList()) {
                long s = SHRINK.getOrDefault(d, d);
                b.addDims(s);
                n *= s;
            }
            ByteBuffer raw = ByteBuffer.allocate((int) n * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int k = 0; k < n; k++) {
                raw.putFloat((float) Math.sin(k + i));
            }
            b.setRawData(ByteString.copyFrom(raw.array()));
            g.setInitializer(i, b);
        }
        for (int i = 0; i < g.getNodeCount(); i++) {
            ai.onnx.proto.OnnxMl.NodeProto.Builder n = g.getNode(i).toBuilder();
            for (int a = 0; a < n.getAttributeCount(); a++) {
                if (n.getAttribute(a).hasT() && n.getAttribute(a).getT().getDataType() == TensorProto.DataType.INT64_VALUE) {
                    n.setAttribute(a, n.getAttribute(a).toBuilder().setT(shrinkInts(n.getAttribute(a).getT())));
                } else if (n.getAttribute(a).hasT()
                        && n.getAttribute(a).getT().getDataType() == TensorProto.DataType.FLOAT_VALUE) {
                    n.setAttribute(a, n.getAttribute(a).toBuilder().setT(shrinkScale(n.getAttribute(a).getT())));
                }
            }
            g.setNode(i, n);
        }
        byte[] out = model.toBuilder().setGraph(g).build().toByteArray();
        Files.write(Path.of(args[0]), out);
        System.out.println("wrote " + args[0] + " (" + out.length + " bytes)");
        System.out.println("imports as: " + OnnxBertImporter.read(Path.of(args[0])).config());
    }

    /** A scalar: the attention scale sqrt(32) of 32-wide heads becomes sqrt(4) = 2; others stay. */
    private static TensorProto shrinkScale(TensorProto t) {
        TensorProto.Builder b = t.toBuilder();
        float v;
        if (t.getFloatDataCount() == 1) {
            v = t.getFloatData(0);
            if (Math.abs(v - Math.sqrt(32)) < 1e-4) {
                b.setFloatData(0, 2f);
            }
        } else if (t.getRawData().size() == 4) {
            v = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).getFloat();
            if (Math.abs(v - Math.sqrt(32)) < 1e-4) {
                b.setRawData(ByteString.copyFrom(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(2f).array()));
            }
        }
        return b.build();
    }

    private static TensorProto shrinkInts(TensorProto t) {
        TensorProto.Builder b = t.toBuilder();
        if (t.getInt64DataCount() > 0) {
            b.clearInt64Data();
            t.getInt64DataList().forEach(v -> b.addInt64Data(INTS.getOrDefault(v, v)));
        } else if (!t.getRawData().isEmpty()) {
            ByteBuffer in = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer out = ByteBuffer.allocate(in.remaining()).order(ByteOrder.LITTLE_ENDIAN);
            while (in.remaining() >= 8) {
                long v = in.getLong();
                out.putLong(INTS.getOrDefault(v, v));
            }
            b.setRawData(ByteString.copyFrom(out.array()));
        }
        return b.build();
    }
}
