package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.types.DataType;
import io.github.peft4j.adapters.BitFitConfig;
import io.github.peft4j.adapters.IA3Config;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import org.junit.jupiter.api.Test;

/**
 * IA3 and BitFit train in fp16 on the CPU: their parameters are fp32 leaves (IA3's vectors are created in fp32;
 * BitFit turns the selected fp16 biases into fp32 leaves and back on removal), cast to fp16 in forward. Three SGD
 * steps on a tiny GPT-2 track the fp32 losses.
 */
class Fp16AdaptersTrainingTest {
    @Test
    void ia3TrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("IA3", TinyModels::gpt2, () -> new IA3Config().targetModules("c_attn", "mlp.c_proj").feedforwardModules("mlp.c_proj").fanInFanOut(true));
    }

    @Test
    void bottleneckAdapterTrainsInFp16() {
        io.github.peft4j.testing.Fp16Tracking.tracks("bottleneck seq_bn", TinyModels::gpt2,
                io.github.peft4j.adapters.bottleneck.BottleneckConfig::seqBn);
    }

    @Test
    void bitFitTrainsInFp16AndGivesTheModelItsDtypeBack() {
        io.github.peft4j.testing.Fp16Tracking.tracks("BitFit", TinyModels::gpt2, BitFitConfig::new);
    }

    @Test
    void anFp32Ia3VectorMergesIntoFp16Weights() {
        try (TransformerModel model = TinyModels.gpt2(DataType.FLOAT16)) {
            PeftModel peft = PeftModel.wrap(model);
            ai.djl.engine.Engine.getInstance().setRandomSeed(3);
            peft.addAdapter("default", new IA3Config().targetModules("c_attn", "mlp.c_proj").feedforwardModules("mlp.c_proj")
                    .fanInFanOut(true).initIa3Weights(false));
            peft.trainableParameters().values().forEach(p -> assertEquals(DataType.FLOAT32, p.array().getDataType()));
            try (ai.djl.ndarray.NDScope scope = new ai.djl.ndarray.NDScope()) {
                ai.djl.ndarray.NDArray ids = TinyModels.ids(model.manager(), 2, 7, 1);
                float[] live = peft.forward(io.github.peft4j.model.ModelInput.of(ids, null)).logits()
                        .toType(DataType.FLOAT32, false).toFloatArray();
                peft.merge("default");
                float[] merged = peft.forward(io.github.peft4j.model.ModelInput.of(ids, null)).logits()
                        .toType(DataType.FLOAT32, false).toFloatArray();
                double worst = 0;
                double scale = 0;
                for (int i = 0; i < live.length; i++) {
                    worst = Math.max(worst, Math.abs(live[i] - merged[i]));
                    scale = Math.max(scale, Math.abs(live[i]));
                }
                assertTrue(worst < 1e-2 * scale, "merged vs unmerged fp16 logits: max|diff| " + worst + " of " + scale);
                System.out.printf("IA3 fp32 vectors merged into fp16 weights: logits max|diff| %.2e (max|logit| %.2f)%n",
                        worst, scale);
                model.parameters().forEach((k, p) -> {
                    if (!k.contains("ia3_l")) {
                        assertEquals(DataType.FLOAT16, p.array().getDataType(), k);
                    }
                });
            }
        }
    }
}
