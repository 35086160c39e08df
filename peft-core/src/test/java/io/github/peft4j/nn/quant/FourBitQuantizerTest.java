package io.github.peft4j.nn.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The quantiser equals bitsandbytes' CPU code bit for bit on {@code fixtures/bnb/quantiser.safetensors}
 * (make_bnb_fixtures.py): odd sizes, partial last blocks, exact midpoint ties, exact zeros and +-absmax, an all-zero
 * block, several nested blocks, NF4 and FP4, block sizes 32 to 4096, with and without double quantisation.
 */
class FourBitQuantizerTest {
    static Path bnb() {
        return Fixtures.root().getParent().resolve("bnb");
    }

    @Test
    void codeTablesAndDynamicMapEqualBitsandbytes() throws Exception {
        try (SafeTensorsFile f = SafeTensorsFile.open(bnb().resolve("quantiser.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            assertBits(f.load("nf4_code", m).toFloatArray(), FourBitType.NF4.code(), "nf4 code");
            assertBits(f.load("fp4_code", m).toFloatArray(), FourBitType.FP4.code(), "fp4 code");
            assertBits(f.load("dynamic_map", m).toFloatArray(), DynamicMap.values(), "dynamic map");
            assertEquals(-0.99296875f, DynamicMap.values()[0]);
        }
    }

    @Test
    void quantiseAndDequantiseEqualBitsandbytesBitForBit() throws Exception {
        long values = 0;
        long bytes = 0;
        long absmaxes = 0;
        try (SafeTensorsFile f = SafeTensorsFile.open(bnb().resolve("quantiser.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            JsonNode cases = new ObjectMapper().readTree(f.metadata().get("cases"));
            assertTrue(cases.size() >= 8);
            for (JsonNode c : cases) {
                String name = c.get("name").asText();
                FourBitType type = FourBitType.of(c.get("quant_type").asText(), name);
                int bs = c.get("blocksize").asInt();
                boolean dq = c.get("double_quant").asBoolean();
                long[] shape = new long[c.get("shape").size()];
                for (int i = 0; i < shape.length; i++) {
                    shape[i] = c.get("shape").get(i).asLong();
                }
                float[] x = f.load(name + ".input", m).toFloatArray();
                FourBitWeights w = FourBitQuantizer.quantize(x, shape, type, bs, dq);
                assertArrayEquals(f.load(name + ".packed", m).toByteArray(), w.packed(), name + " packed codes");
                if (dq) {
                    assertArrayEquals(f.load(name + ".absmax", m).toByteArray(), w.absmax8(), name + " absmax codes");
                    assertBits(f.load(name + ".nested_absmax", m).toFloatArray(), w.nestedAbsmax(), name + " nested");
                    assertBits(f.load(name + ".offset", m).toFloatArray(), new float[] {w.offset()}, name + " offset");
                    assertBits(f.load(name + ".absmax_dq", m).toFloatArray(), w.blockAbsmax(), name + " absmax");
                    absmaxes += w.absmax8().length + w.nestedAbsmax().length + 1;
                } else {
                    assertBits(f.load(name + ".absmax", m).toFloatArray(), w.absmax(), name + " absmax");
                    absmaxes += w.absmax().length;
                }
                assertBits(f.load(name + ".dequant", m).toFloatArray(), FourBitQuantizer.dequantize(w), name + " dequant");
                values += x.length;
                bytes += w.packed().length;
            }
        }
        System.out.printf("bnb quantiser bit-exact: %d values dequantised, %d packed bytes, %d absmax values,"
                + " mismatches 0%n", values, bytes, absmaxes);
    }

    @Test
    void bitsPerWeight() {
        float[] x = new float[4096 * 64];
        java.util.Random r = new java.util.Random(1);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        double dq = FourBitQuantizer.quantize(x, new long[] {4096, 64}, FourBitType.NF4, 64, true).bitsPerWeight();
        double plain = FourBitQuantizer.quantize(x, new long[] {4096, 64}, FourBitType.NF4, 64, false).bitsPerWeight();
        System.out.printf("bits per weight: %.4f with double quantisation, %.4f without%n", dq, plain);
        assertEquals(4.5, plain, 1e-12);
        assertEquals(4.127, dq, 1e-3);
    }

    @Test
    void badBlocksizeIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> FourBitQuantizer.quantize(new float[100], new long[] {100}, FourBitType.NF4, 48, false));
        assertTrue(e.getMessage().contains("power of two"), e.getMessage());
    }

    /** Equal bit patterns (so +0 and -0 differ, NaN equals itself). */
    static void assertBits(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + " length");
        for (int i = 0; i < expected.length; i++) {
            if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i])) {
                throw new AssertionError(what + " [" + i + "]: expected " + expected[i] + ", got " + actual[i]);
            }
        }
    }
}
