package io.github.peft4j.lora.qlora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.PretokenizedData;
import io.github.peft4j.lora.LoraLayer;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Five SGD steps of QLoRA reproduce transformers + bitsandbytes + HF PEFT's losses: the dense base of
 * {@code train-parity/llama_lora_sgd} quantised while loading (NF4, double quantisation, as bitsandbytes), its
 * initial adapter, the same records and settings as {@code make_train_parity.py} (make_bnb_fixtures.py).
 */
class QLoraTrainingTest {
    static final Path PARITY = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
    static final Path EXPECTED = Fixtures.root().resolveSibling("bnb").resolve("llama_nf4_dq_sgd/losses.json");

    @Test
    void fiveSgdStepsOfQloraGiveHfLosses() throws IOException {
        JsonNode expected = new ObjectMapper().readTree(EXPECTED.toFile());
        Path base = PARITY.resolve("base");
        try (TransformerModel model = Models.load(base, HfConfig.read(base), Device.cpu(), DataType.FLOAT32, null, null,
                Quantization.nf4());
                Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(PARITY.resolve("adapter"), PeftModel.DEFAULT, true);
            assertInstanceOf(Linear4bit.class,
                    ((LoraLayer) model.resolve("model.layers.0.self_attn.q_proj")).baseModule());
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft)
                    .setTrainData(PretokenizedData.forModel(model, 0, BadLinePolicy.STOP).read(PARITY.resolve("data.jsonl")))
                    .optOptimizer(sgd).optLearningRate(expected.get("lr").asDouble()).optMaxSteps(5)
                    .optBatchSize(expected.get("batch_size").asInt()).optShuffle(false)
                    .optMaxGradNorm(expected.get("max_grad_norm").asDouble()).build()) {
                List<Double> losses = t.train().losses();
                assertEquals(5, losses.size());
                double worst = 0;
                for (int i = 0; i < 5; i++) {
                    double e = expected.get("losses").get(i).asDouble();
                    assertEquals(e, losses.get(i), 1e-4, "step " + (i + 1));
                    worst = Math.max(worst, Math.abs(e - losses.get(i)));
                }
                System.out.printf("parity qlora-sgd 5 steps losses %s max|diff| = %.2e%n", losses, worst);
            }
        }
    }
}
