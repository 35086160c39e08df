package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.util.Arrays;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Greedy generation with a LoRA adapter gives transformers' {@code generate(do_sample=False)} token ids
 * (fixtures from make_generation_fixture.py: a left-padded batch of two prompts and one unpadded prompt),
 * over the cache and by full recompute, and the merged model gives the same ids.
 */
class LoraGenerationParityTest {
    @ParameterizedTest
    @ValueSource(strings = {"llama_generate", "gpt2_generate"})
    void loraGreedyMatchesTransformers(String name) {
        JsonNode g = Fixtures.json(name, "generate.json");
        int n = g.get("max_new_tokens").asInt();
        try (TransformerModel model = Models.load(Fixtures.dir(name).resolve("base"))) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(Fixtures.dir(name).resolve("adapter"), PeftModel.DEFAULT, false);
            for (String prompt : new String[] {"batch", "single"}) {
                JsonNode p = g.get("prompts").get(prompt);
                long[][] ids = Fixtures.matrix(p.get("input_ids"));
                long[][] mask = Fixtures.matrix(p.get("attention_mask"));
                int[][] want = toInt(Fixtures.matrix(g.get("adapter_" + prompt)));
                GenerationResult cached = Generator.of(peft).generate(ids, mask, GenerationConfig.greedy(n));
                GenerationResult full = Generator.of(peft).generate(ids, mask,
                        GenerationConfig.builder().maxNewTokens(n).useCache(false).build());
                System.out.printf("%s adapter %s: %s%n", name, prompt, Arrays.deepToString(cached.tokens()));
                assertArrayEquals(want, cached.tokens(), name + " adapter " + prompt);
                assertArrayEquals(want, full.tokens(), name + " adapter " + prompt + " without cache");
                assertFalse(Arrays.deepEquals(want, toInt(Fixtures.matrix(g.get("base_" + prompt)))), "the adapter matters");
            }
            JsonNode p = g.get("prompts").get("batch");
            TransformerModel merged = peft.mergeAndUnload();
            GenerationResult r = Generator.of(merged).generate(Fixtures.matrix(p.get("input_ids")),
                    Fixtures.matrix(p.get("attention_mask")), GenerationConfig.greedy(n));
            assertArrayEquals(toInt(Fixtures.matrix(g.get("adapter_batch"))), r.tokens(), name + " merged");
        }
    }

    private static int[][] toInt(long[][] m) {
        return Arrays.stream(m).map(r -> Arrays.stream(r).mapToInt(x -> (int) x).toArray()).toArray(int[][]::new);
    }
}
