package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.github.peft4j.nn.Ops;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * {@link Ops#cast} is differentiable where DJL's {@code toType} is not, and no {@code toType} is left on a gradient
 * path in the main sources of any module: every use is listed here with why it is not on one.
 */
class GradientPathCastTest {

    /** file name -> fragments of the allowed toType lines (each: why it is not on a gradient path). */
    private static final Map<String, List<String>> ALLOWED = Map.ofEntries(
            Map.entry("SentenceEmbeddings.java", List.of(".toType(hiddenStates.getDataType(), false)")), // the mask
            Map.entry("RandomWeights.java", List.of("toType(dtype, false)")), // initial weights
            Map.entry("LlamaModel.java", List.of("emb.cos().toType", "emb.sin().toType")), // RoPE tables (constants)
            Map.entry("Attention.java", List.of("keyMask.toType(DataType.BOOLEAN", "allowed.toType(dtype", // masks
                    "scale.toType(DataType.FLOAT32, false).getFloat()")), // reading the constant scale
            Map.entry("Losses.java", List.of("labels.toType(DataType.INT64", "keep.toType(", // labels and their mask
                    "target.neq(Example.IGNORE).toType(DataType.INT64")), // label mask
            Map.entry("Checkpoints.java", List.of("v.toType(w.getDataType(), false).copyTo(w)")), // resume: a value copy
            Map.entry("Gradients.java", List.of("g.toType(DataType.FLOAT64, false)")), // reading gradients
            Map.entry("BaseOptimizer.java", List.of("step.toType(DataType.INT64")), // optimizer state
            Map.entry("LogitsProcessors.java", List.of("ids.toType(DataType.INT64", "scores.toType(DataType.FLOAT32")), // decoding
            Map.entry("Generator.java", List.of("toType(DataType.FLOAT32, false)", "a.toType(DataType.INT64")), // decoding
            Map.entry("Ops.java", List.of("detached.toType(dtype, true)")), // ownedCopy: a detached copy
            Map.entry("SafeTensorsFile.java", List.of("array.toType(target, false)")), // reading files
            Map.entry("TorchBinFile.java", List.of("array.toType(target, false)")), // reading files
            Map.entry("LogitsCommand.java", List.of("logits.toType(DataType.FLOAT32, false)")), // writing logits out
            Map.entry("LogitsServer.java", List.of("l.toType(DataType.FLOAT32, false)")), // serving logits out (no grad)
            Map.entry("LoraLayer.java", List.of("d.toType(fourBit != null ? DataType.FLOAT32", // merge delta
                    "w : w.toType(dt, false)", // a 4-bit base's dequantised (frozen) weight for DoRA's detached norm
                    "w = w.toType(dt, false)", "a = a.toType(dt, false)", "b = b.toType(dt, false)")), // DoRA's detached norm
            Map.entry("LoraEmbeddingLayer.java", List.of("w.toType(dt, false)", "a = a.toType(dt, false)", // DoRA's detached
                    "b = b.toType(dt, false)", ".toType(table.getDataType(), false)", // norm; a constant row mask
                    "d.toType(embeddingWeight().array().getDataType(), false)")), // merge delta
            Map.entry("LoraAdapter.java", List.of("t.toType(w.getDataType(), false)")), // loading the saved base embedding
            Map.entry("DoraMagnitude.java", List.of("weightOutIn.toType(DataType.FLOAT32, false)", // initial magnitude
                    "magnitude.array().toType(norm.getDataType(), false).div(norm)")), // merge factor
            Map.entry("MergeOrder.java", List.of("next.toType(target.getDataType(), false).copyTo(target)")), // merging
            Map.entry("TransformerLm.java", List.of("sel.toType(DataType.FLOAT32, false)")), // decoding: last-position logits
            Map.entry("PromptTuningAdapter.java", List.of("toType(DataType.FLOAT32, true)")), // initial values
            Map.entry("PromptEmbeddingAdapter.java", List.of("toType(DataType.FLOAT32, true)")), // loading saved values
            Map.entry("Linear4bit.java", List.of("uint8.toType(DataType.INT64, false)", // code indices
                    "w.toType(dt, false)", // the frozen dequantised 4-bit weight (no gradient of its own)
                    "weight.toType(DataType.FLOAT32, false)", // requantize: values read to the host
                    "reshape(-1).toType(DataType.INT32, false)", // code indices
                    "f32.toType(dtype, false)")), // the frozen dequantised 4-bit weight into the compute dtype
            Map.entry("Quantization.java", List.of("w.toType(dtype, false)")), // dequantize: a frozen weight's new value
            Map.entry("CheckpointWeights.java", List.of("init.toType(DataType.FLOAT32, false)"))); // loading: values to quantise

    @Test
    void castIsDifferentiableAndToTypeIsNot() {
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray w = m.create(new float[] {0.5f, -1.25f, 2f}, new Shape(3)).duplicate();
            w.setRequiresGradient(true);
            NDArray x = m.create(new float[] {3f, 1f, -2f}, new Shape(3)).duplicate().toType(DataType.FLOAT16, false);
            assertSame(w, Ops.cast(w, DataType.FLOAT32), "identity when the dtype matches");
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray h = Ops.cast(w, DataType.FLOAT16).mul(x); // fp16 compute
                assertEquals(DataType.FLOAT16, h.getDataType());
                NDArray loss = Ops.cast(h.square().sum(), DataType.FLOAT32);
                gc.backward(loss);
            }
            NDArray g = JniUtils.getGradient((PtNDArray) w);
            assertNotNull(g);
            assertEquals(DataType.FLOAT32, g.getDataType());
            // d/dw sum((w x)^2) = 2 w x^2, exact in fp16 for these values
            assertArrayEquals(new float[] {9f, -2.5f, 16f}, g.toFloatArray(), 0f);

            // the same graph with toType: u gets no gradient (v, cast with Ops.cast, does)
            NDArray u = m.create(new float[] {1f, 2f}, new Shape(2)).duplicate();
            NDArray v = m.create(new float[] {1f, 2f}, new Shape(2)).duplicate();
            u.setRequiresGradient(true);
            v.setRequiresGradient(true);
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray cut = u.toType(DataType.FLOAT16, false).square().sum().toType(DataType.FLOAT32, false);
                NDArray kept = Ops.cast(Ops.cast(v, DataType.FLOAT16).square().sum(), DataType.FLOAT32);
                gc.backward(cut.add(kept));
            }
            assertArrayEquals(new float[] {2f, 4f}, JniUtils.getGradient((PtNDArray) v).toFloatArray(), 0f);
            NDArray gu = JniUtils.getGradient((PtNDArray) u);
            assertTrue(gu == null || gu.abs().sum().getFloat() == 0, "a gradient went through toType");
        }
    }

    @Test
    void noToTypeOnAGradientPathInTheMainSources() throws IOException {
        Path root = Path.of("").toAbsolutePath().getParent(); // the reactor root (tests run in peft-core)
        List<String> unlisted = new ArrayList<>();
        int seen = 0;
        try (Stream<Path> files = Files.walk(root)) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java") && p.toString().contains("/src/main/java/")
                    && !p.toString().contains("/target/")).toList()) {
                List<String> lines = Files.readAllLines(f);
                for (int i = 0; i < lines.size(); i++) {
                    String line = lines.get(i);
                    String code = line.contains("//") ? line.substring(0, line.indexOf("//")) : line;
                    if (!code.contains("toType(") || code.trim().startsWith("*")) {
                        continue;
                    }
                    seen++;
                    List<String> ok = ALLOWED.getOrDefault(f.getFileName().toString(), List.of());
                    if (ok.stream().noneMatch(code::contains)) {
                        unlisted.add(root.relativize(f) + ":" + (i + 1) + ": " + line.trim());
                    }
                }
            }
        }
        assertTrue(seen > 20, "the scan found only " + seen + " toType calls; is it reading the sources?");
        assertTrue(unlisted.isEmpty(), "toType cuts gradients (DJL runs it under a no-grad guard): use Ops.cast on a "
                + "gradient path, or list the use in GradientPathCastTest.ALLOWED with why it is not on one:\n"
                + String.join("\n", unlisted));
    }
}
