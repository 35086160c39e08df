package io.github.peft4j.nn.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.nn.Linear;
import io.github.peft4j.testing.Fixtures;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The 4-bit projection dequantises on the device exactly as bitsandbytes and computes x W^T + b with it. */
class Linear4bitTest {
    @Test
    void deviceDequantisationEqualsBitsandbytesBitForBit() throws Exception {
        int checked = 0;
        long values = 0;
        try (SafeTensorsFile f = SafeTensorsFile.open(FourBitQuantizerTest.bnb().resolve("quantiser.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            for (JsonNode c : new ObjectMapper().readTree(f.metadata().get("cases"))) {
                if (c.get("shape").size() != 2) {
                    continue;
                }
                String name = c.get("name").asText();
                long out = c.get("shape").get(0).asLong();
                long in = c.get("shape").get(1).asLong();
                FourBitWeights w = FourBitQuantizer.quantize(f.load(name + ".input", m).toFloatArray(),
                        new long[] {out, in}, FourBitType.of(c.get("quant_type").asText(), name),
                        c.get("blocksize").asInt(), c.get("double_quant").asBoolean());
                Linear4bit layer = Linear4bit.of(w, null, m, "float32");
                try (NDArray deq = layer.dequantize()) {
                    assertEquals(new Shape(out, in), deq.getShape());
                    FourBitQuantizerTest.assertBits(f.load(name + ".dequant", m).toFloatArray(), deq.toFloatArray(),
                            name + " device dequant");
                }
                FourBitQuantizerTest.assertBits(w.blockAbsmax(), layer.blockAbsmax().toFloatArray(), name + " absmax");
                assertEquals(w, w); // record sanity
                FourBitWeights back = layer.toHost();
                assertTrue(java.util.Arrays.equals(w.packed(), back.packed()), name + " round trip");
                checked++;
                values += out * in;
            }
        }
        System.out.printf("Linear4bit device dequantisation bit-exact: %d tensors, %d values, mismatches 0%n", checked, values);
        assertTrue(checked >= 6);
    }

    @Test
    void forwardIsTheDenseProductWithTheDequantisedWeightAndHoldsNoDenseWeights() {
        try (NDManager m = NDManager.newBaseManager()) {
            ai.djl.engine.Engine.getInstance().setRandomSeed(3);
            NDArray dense = m.randomNormal(0f, 0.05f, new Shape(24, 37), ai.djl.ndarray.types.DataType.FLOAT32);
            NDArray bias = m.randomNormal(new Shape(24));
            NDArray x = m.randomNormal(new Shape(2, 5, 37));
            FourBitWeights w = FourBitQuantizer.quantize(dense.toFloatArray(), new long[] {24, 37}, FourBitType.NF4, 64, true);
            Linear4bit layer = Linear4bit.of(w, bias.duplicate(), m, "float32");
            NDArray deq = m.create(FourBitQuantizer.dequantize(w), new Shape(24, 37));
            NDArray expected = new Linear(deq, bias).forward(x);
            NDArray y = layer.forward(x);
            double diff = Fixtures.maxAbsDiff(expected, y);
            assertTrue(diff < 1e-6, "max |diff| " + diff);
            assertNull(layer.dense());
            assertEquals(37, layer.inFeatures());
            assertEquals(24, layer.outFeatures());
            assertEquals(Set.of("weight", "weight.absmax", "weight.quant_map", "weight.nested_absmax",
                    "weight.nested_quant_map", "weight.quant_state.bitsandbytes__nf4", "bias"),
                    layer.localParameters().keySet());
            // fp16 compute: the weight is dequantised in fp32 and cast, as bitsandbytes' .to(dtype)
            NDArray y16 = layer.forward(x.toType(ai.djl.ndarray.types.DataType.FLOAT16, false));
            assertEquals(ai.djl.ndarray.types.DataType.FLOAT16, y16.getDataType());
            assertTrue(Fixtures.maxAbsDiff(expected, y16.toType(ai.djl.ndarray.types.DataType.FLOAT32, false)) < 1e-2);
        }
    }
}
