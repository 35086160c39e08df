package io.github.peft4j.prompt;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Losses;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code modules_to_save} on prompt-learning configs (as HF PEFT's {@code PromptLearningConfig} has it): the named
 * modules are trained whole next to the virtual tokens, saved under HF's prompt-learning keys
 * ({@code base_model.<module path>.<param>}), and a reload reproduces the logits.
 */
class PromptModulesToSaveTest {
    private static final List<String> SAVE = List.of("pooler.dense", "classifier");
    // tiny BERT (hidden 64, 3 labels): pooler.dense 64 x 64 + 64, classifier 3 x 64 + 3
    private static final long POOLER = 64 * 64 + 64;
    private static final long CLASSIFIER = 3 * 64 + 3;

    @TempDir
    Path tmp;

    private static long count(PeftModel peft) {
        return peft.trainableParameters().values().stream().mapToLong(Param::numel).sum();
    }

    /** A copy in the parameter's manager (closed with the model). */
    private static NDArray copy(Param p) {
        return p.array().duplicate();
    }

    @Test
    void promptTuningTrainsSavesAndReloadsThePoolerAndClassifier() throws Exception {
        Path dir = tmp.resolve("adapter");
        try (TransformerModel model = TinyModels.bert(TaskType.SEQ_CLS); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter(PeftModel.DEFAULT, new PromptTuningConfig().numVirtualTokens(4).modulesToSave(SAVE));
            Map<String, Param> trainable = peft.trainableParameters();
            // the same names and count (4,611) as HF PEFT 0.21's get_peft_model on this model and config
            assertEquals(new TreeSet<>(List.of("prompt_encoder.default.embedding.weight",
                    "bert.pooler.dense.modules_to_save.default.weight", "bert.pooler.dense.modules_to_save.default.bias",
                    "classifier.modules_to_save.default.weight", "classifier.modules_to_save.default.bias")),
                    new TreeSet<>(trainable.keySet()));
            assertEquals(4 * 64 + POOLER + CLASSIFIER, count(peft));

            Map<String, NDArray> before = new TreeMap<>();
            trainable.forEach((k, p) -> before.put(k, copy(p)));
            NDArray basePooler = copy(model.parameters().get("bert.pooler.dense.original_module.weight"));
            NDArray ids = TinyModels.ids(m, 4, 6, 11);
            NDArray labels = m.create(new long[] {0, 1, 2, 1});
            double first = Double.NaN;
            double last = Double.NaN;
            for (int step = 0; step < 20; step++) {
                try (NDScope scope = new NDScope()) {
                    NDArray loss;
                    try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                        loss = Losses.classification(peft.forward(ModelInput.of(ids, null)).logits(), labels);
                        gc.backward(loss);
                    }
                    last = loss.getFloat();
                    first = step == 0 ? last : first;
                    for (Param p : peft.trainableParameters().values()) {
                        NDArray g = p.array().getGradient();
                        p.array().subi(g.mul(Ops.scalar(g, 0.1)));
                    }
                }
            }
            System.out.printf("prompt tuning + modules_to_save: loss %.4f -> %.4f%n", first, last);
            assertTrue(last < 0.5 * first, "loss " + first + " -> " + last);
            for (Map.Entry<String, Param> e : peft.trainableParameters().entrySet()) {
                assertTrue(Fixtures.maxAbsDiff(e.getValue().array(), before.get(e.getKey())) > 1e-4, e.getKey() + " did not train");
            }
            assertEquals(0.0, Fixtures.maxAbsDiff(model.parameters().get("bert.pooler.dense.original_module.weight").array(), basePooler),
                    "the base pooler stays as it was; its copy trains");
            NDArray tuned = peft.forward(ModelInput.of(ids, null)).logits();
            peft.save(dir);

            // HF PEFT's keys for a prompt-learning adapter with modules_to_save (checked against peft 0.21)
            try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(List.of("base_model.bert.pooler.dense.bias", "base_model.bert.pooler.dense.weight",
                        "base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings")),
                        new TreeSet<>(f.names()));
                assertEquals(0.0, Fixtures.maxAbsDiff(f.load("base_model.bert.pooler.dense.weight", m),
                        peft.trainableParameters().get("bert.pooler.dense.modules_to_save.default.weight").array()));
            }
            JsonNode config = new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
            assertEquals("[\"pooler.dense\",\"classifier\"]", config.get("modules_to_save").toString());

            try (TransformerModel fresh = TinyModels.bert(TaskType.SEQ_CLS)) {
                PeftModel again = PeftModel.wrap(fresh);
                again.loadAdapter(dir, PeftModel.DEFAULT, true);
                assertEquals(4 * 64 + POOLER + CLASSIFIER, count(again));
                assertEquals(0.0, Fixtures.maxAbsDiff(again.forward(ModelInput.of(ids, null)).logits(), tuned),
                        "reloaded logits");
            }
        }
    }

    @Test
    void prefixTuningTakesModulesToSaveToo() {
        try (TransformerModel model = TinyModels.bert(TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("p", new PrefixTuningConfig().numVirtualTokens(3).modulesToSave(List.of("pooler.dense")));
            // prefix: 3 tokens x 2 layers x (key + value) x 64; the head joins modules_to_save automatically
            assertEquals(3 * 2 * 2 * 64 + POOLER + CLASSIFIER, count(peft));
        }
    }

    @Test
    void hfSeqClsFixtureResavesWithItsModulesToSave() throws Exception {
        Path src = Fixtures.dir("bert_prompt").resolve("adapter");
        try (TransformerModel model = Models.load(Fixtures.dir("bert_prompt").resolve("base"));
                NDManager m = NDManager.newBaseManager();
                SafeTensorsFile orig = SafeTensorsFile.open(src.resolve("adapter_model.safetensors"))) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(src, PeftModel.DEFAULT, false);
            Path out = tmp.resolve("resaved");
            peft.save(out);
            try (SafeTensorsFile again = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(orig.names()), new TreeSet<>(again.names()));
                for (String k : orig.names()) {
                    assertEquals(0.0, Fixtures.maxAbsDiff(again.load(k, m), orig.load(k, m)), k);
                }
            }
            JsonNode a = new ObjectMapper().readTree(src.resolve("adapter_config.json").toFile());
            JsonNode b = new ObjectMapper().readTree(out.resolve("adapter_config.json").toFile());
            // every key peft4j writes has HF's value (peft_version and similar informational keys are HF's own)
            Fixtures.assertConfigKeysAsHf(a, b, "bert_prompt");
            assertEquals(Fixtures.dir("bert_prompt").resolve("base").toString(), b.get("base_model_name_or_path").asText());
            assertEquals(List.of("classifier", "score", "classifier", "score"),
                    List.of(b.get("modules_to_save").get(0).asText(), b.get("modules_to_save").get(1).asText(),
                            b.get("modules_to_save").get(2).asText(), b.get("modules_to_save").get(3).asText()));
        }
    }
}
