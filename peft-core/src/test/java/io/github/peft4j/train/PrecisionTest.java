package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The trainer's numeric mode: fp16 needs fp32 trainable leaves, fp16 is allowed on the CPU, fp32 does not scale. */
class PrecisionTest {
    @org.junit.jupiter.api.BeforeAll
    static void register() {
        io.github.peft4j.peft.PeftMethods.register(new ProbeMethod());
    }

    private static final List<Example> DATA = List.of(Example.tokens(1, 2, 3, 4), Example.tokens(5, 6, 7));

    @Test
    void anFp16TrainableParameterIsRefusedWithItsName() {
        // the probe trains two RMSNorm weights in place: in an fp16 model they are fp16, which loss scaling cannot update
        try (TransformerModel model = TinyModels.llama(DataType.FLOAT16)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new ProbeMethod.ProbeConfig());
            PeftException e = assertThrows(PeftException.class, () -> PeftTrainer.builder().setModel(peft).setTrainData(DATA)
                    .build());
            assertTrue(List.of(ProbeMethod.SELECTED).stream().anyMatch(n -> e.getMessage().startsWith(
                    "PeftTrainer: trainable parameter '" + n + "' is FLOAT16 in a FLOAT16 model")), e.getMessage());
        }
    }

    @Test
    void fp16ScalesByDefaultOnTheCpuAndFp32DoesNot() {
        try (TransformerModel fp16 = TinyModels.llama(DataType.FLOAT16); TransformerModel fp32 = TinyModels.llama()) {
            PeftModel half = PeftModel.wrap(fp16);
            // no fp16 trainable parameter: the probe's weights are made fp32 leaves by hand here
            half.addAdapter("default", new ProbeMethod.ProbeConfig());
            half.trainableParameters().values().forEach(p -> p.set(p.array().toType(DataType.FLOAT32, false)));
            try (PeftTrainer t = PeftTrainer.builder().setModel(half).setTrainData(DATA).build()) {
                assertTrue(t.scaler().enabled());
                assertEquals(LossScaler.INIT_SCALE, t.scaler().scale(), 0);
            }
            PeftModel full = PeftModel.wrap(fp32);
            full.addAdapter("default", new ProbeMethod.ProbeConfig());
            try (PeftTrainer t = PeftTrainer.builder().setModel(full).setTrainData(DATA).build()) {
                assertFalse(t.scaler().enabled());
                assertEquals(1, t.scaler().scale(), 0);
            }
        }
    }
}
