package io.github.peft4j.train;


import ai.djl.ndarray.types.DataType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PrefixTuningConfig;
import io.github.peft4j.prompt.PromptTuningConfig;
import io.github.peft4j.testing.TinyModels;
import org.junit.jupiter.api.Test;

/**
 * Prompt and prefix tuning train in fp16 on the CPU: their fp32 parameters are cast to fp16 differentiably (the
 * prompt embeddings or the key/value prefix). Three SGD steps on a tiny Llama track the fp32 losses.
 */
class Fp16PromptTrainingTest {
    @Test
    void promptTuningTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("prompt tuning", TinyModels::llama, () -> new PromptTuningConfig().numVirtualTokens(4));
    }

    @Test
    void pTuningWithAnMlpEncoderTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("P-tuning MLP", TinyModels::llama,
                () -> new io.github.peft4j.prompt.ptuning.PromptEncoderConfig().encoderReparameterizationType("MLP")
                        .encoderHiddenSize(16).numVirtualTokens(3));
    }

    @Test
    void prefixTuningWithProjectionTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("prefix tuning", TinyModels::llama, () -> new PrefixTuningConfig().numVirtualTokens(3).prefixProjection(true).encoderHiddenSize(16));
    }
}
