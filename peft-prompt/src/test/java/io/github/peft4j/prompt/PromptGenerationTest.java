package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftModel;
import java.util.Arrays;
import java.util.function.IntFunction;
import org.junit.jupiter.api.Test;

/**
 * Generation with prompt-learning adapters: the virtual tokens are added once on the first step and the cache
 * carries them, so decoding over the cache gives the tokens of recomputing the whole sequence every step
 * (a left-padded batch included), and the adapter changes what is generated.
 */
class PromptGenerationTest {
    private static final int[][] PROMPTS = {{3, 14, 15, 9, 26, 5}, {35, 8, 9}};

    private static void check(IntFunction<TransformerModel> make, PeftConfig config) {
        try (TransformerModel model = make.apply(11)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", config);
            GenerationConfig.Builder b = GenerationConfig.builder().maxNewTokens(10).eosTokenIds().padTokenId(0);
            int[][] cached = Generator.of(peft).generate(PROMPTS, b.build()).tokens();
            int[][] full = Generator.of(peft).generate(PROMPTS, b.useCache(false).build()).tokens();
            assertArrayEquals(full, cached, config.peftType() + ": cache vs full recompute");
            assertEquals(10, cached[0].length);
            int[][] base;
            try (AutoCloseable off = peft.disabled()) {
                base = Generator.of(peft).generate(PROMPTS, b.useCache(true).build()).tokens();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
            assertFalse(Arrays.deepEquals(base, cached), config.peftType() + ": the adapter matters");
        }
    }

    @Test
    void prefixTuningLlama() {
        check(TestModels::llama, new PrefixTuningConfig().numVirtualTokens(4));
    }

    @Test
    void prefixTuningGpt2() {
        check(TestModels::gpt2, new PrefixTuningConfig().numVirtualTokens(4));
    }

    @Test
    void promptTuningGpt2() {
        check(TestModels::gpt2, new PromptTuningConfig().numVirtualTokens(4));
    }
}
