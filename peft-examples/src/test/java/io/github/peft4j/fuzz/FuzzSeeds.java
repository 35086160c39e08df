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
            if (t.getDataType() != TensorProto.DataType.FLOAT_VALUE) {
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
        byte[] out = model.toBuilder().setGraph(g).build().toByteArray();
        Files.write(Path.of(args[0]), out);
        System.out.println("wrote " + args[0] + " (" + out.length + " bytes)");
    }
}
