package io.github.peft4j.model;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.nn.FusedOps;
import io.github.peft4j.nn.Param;
import io.github.peft4j.testing.Fixtures;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * BF16 checkpoints and BF16 compute. On the stock engine (DJL's libtorch 2.7.1 JNI, which aborts the JVM on
 * BFLOAT16) a BF16 compute dtype is refused with a clear error and BF16 files are converted while loading; with
 * the BF16-patched JNI and the fused library (scripts/with-torch.sh) a BF16 checkpoint loads as BF16 and runs in
 * BF16. The test checkpoint is the llama_lora fixture base rounded to BF16 (round to nearest even), written here.
 */
class Bf16Test {
    @TempDir
    Path tmp;

    /** Writes {@code dir/model.safetensors} as BF16 (and copies config.json) from the fp32 fixture base. */
    static void writeBf16Copy(Path src, Path dir) throws IOException {
        Files.createDirectories(dir);
        Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
        StringBuilder header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        try (SafeTensorsFile f = SafeTensorsFile.open(src.resolve("model.safetensors"));
                NDManager m = NDManager.newBaseManager(Device.cpu(), "PyTorch")) {
            for (String name : f.names()) {
                NDArray a = f.load(name, m, DataType.FLOAT32);
                float[] v = a.toFloatArray();
                long begin = data.size();
                for (float x : v) {
                    int bits = Float.floatToRawIntBits(x);
                    int bf = (bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16; // round to nearest even
                    data.write(bf & 0xFF);
                    data.write((bf >>> 8) & 0xFF);
                }
                header.append(",\"").append(name).append("\":{\"dtype\":\"BF16\",\"shape\":")
                        .append(a.getShape().toString().replace('(', '[').replace(')', ']'))
                        .append(",\"data_offsets\":[").append(begin).append(',').append(data.size()).append("]}");
            }
        }
        header.append('}');
        while ((header.length() + 8) % 8 != 0) {
            header.append(' ');
        }
        byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(h.length);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(len.array());
        out.write(h);
        out.write(data.toByteArray());
        Files.write(dir.resolve("model.safetensors"), out.toByteArray());
    }

    @Test
    @DisplayName("stock engine: BFLOAT16 compute refused with a clear error; BF16 files load converted to FLOAT32")
    void refusedWithoutBf16Engine() throws IOException {
        Path dir = tmp.resolve("bf16");
        writeBf16Copy(Fixtures.dir("llama_lora").resolve("base"), dir);
        try (NDManager m = NDManager.newBaseManager(Device.cpu(), "PyTorch");
                SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("model.safetensors"))) {
            NDArray w = f.load("model.norm.weight", m, DataType.FLOAT32);
            assertEquals(DataType.FLOAT32, w.getDataType(), "BF16 widened exactly to FLOAT32");
            if (!FusedOps.bf16Supported()) {
                PeftException e = assertThrows(PeftException.class, () -> Models.load(dir, Device.cpu(), DataType.BFLOAT16, null));
                assertTrue(e.getMessage().contains("scripts/with-torch.sh"), e.getMessage());
                PeftException e2 = assertThrows(PeftException.class, () -> f.load("model.norm.weight", m, DataType.BFLOAT16));
                assertTrue(e2.getMessage().contains("model.norm.weight") && e2.getMessage().contains("BF16"), e2.getMessage());
            }
        }
    }

    @Test
    @DisplayName("BF16 engine: BF16 checkpoint loads as BF16 and computes in BF16 (runs only with the BF16 JNI + fused library, scripts/with-torch.sh)")
    void computesInBf16WhenSupported() throws IOException {
        assumeTrue(FusedOps.bf16Supported(), "no BF16 engine (" + FusedOps.status() + "): runs through scripts/with-torch.sh only");
        Path dir = tmp.resolve("bf16");
        writeBf16Copy(Fixtures.dir("llama_lora").resolve("base"), dir);
        try (NDManager m = NDManager.newBaseManager(Device.cpu(), "PyTorch")) {
            NDArray ids = Fixtures.ids(m, "llama_lora", "input_ids");
            float[] ref;
            try (TransformerModel fp32 = Models.load(dir, Device.cpu(), DataType.FLOAT32, null)) {
                ref = fp32.forward(ModelInput.of(ids, null)).logits().toFloatArray();
            }
            try (TransformerModel bf16 = Models.load(dir, Device.cpu(), DataType.BFLOAT16, null)) {
                List<DataType> types = new ArrayList<>();
                for (Param p : bf16.parameters().values()) {
                    types.add(p.array().getDataType());
                }
                assertTrue(types.stream().allMatch(t -> t == DataType.BFLOAT16), "all weights BF16: " + types);
                NDArray logits = bf16.forward(ModelInput.of(ids, null)).logits();
                assertEquals(DataType.BFLOAT16, logits.getDataType(), "computed in BF16");
                float[] got = logits.toType(DataType.FLOAT32, false).toFloatArray();
                double maxDiff = 0;
                double maxRef = 0;
                for (int i = 0; i < ref.length; i++) {
                    maxDiff = Math.max(maxDiff, Math.abs(got[i] - ref[i]));
                    maxRef = Math.max(maxRef, Math.abs(ref[i]));
                }
                System.out.printf("BF16 compute vs FP32 compute on the same BF16 weights: logits max|diff| %.4f (max|logit| %.3f)%n",
                        maxDiff, maxRef);
                // BF16 keeps 8 significant bits (relative step 2^-8 = 0.4 %); two layers of rounding: within 3 %
                assertTrue(maxDiff <= 0.03 * maxRef, "BF16 logits max|diff| " + maxDiff + " vs max|logit| " + maxRef);
                assertTrue(maxDiff > 0, "BF16 compute differs from FP32 (else it did not run in BF16)");
            }
        }
    }
}
