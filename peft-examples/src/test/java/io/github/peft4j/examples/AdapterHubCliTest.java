package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AdapterHub's {@code save_adapter} directories on the command line: {@code logits --adapter}, {@code info} and
 * {@code train --init-adapter} read them (fixtures of peft-adapters, made by AdapterHub 1.2.0).
 */
class AdapterHubCliTest {
    private static final Path HUB = Fixtures.root().resolve("../../../../../../peft-adapters/src/test/resources/fixtures/adapterhub")
            .normalize();
    private static final ObjectMapper JSON = new ObjectMapper();

    private static List<Double> flat(JsonNode n, List<Double> out) {
        if (n.isArray()) {
            n.forEach(c -> flat(c, out));
        } else {
            out.add(n.asDouble());
        }
        return out;
    }

    /** A UniPELT adapter in AdapterHub's default torch-pickle form ({@code pytorch_adapter.bin}). */
    @Test
    void logitsAndInfoReadAnAdapterHubUniPeltPickle(@TempDir Path dir) throws Exception {
        Path c = HUB.resolve("llama_unipelt");
        Path adapter = Files.createDirectories(dir.resolve("unipelt"));
        for (String f : List.of("adapter_config.json", "pytorch_adapter.bin")) {
            Files.copy(c.resolve("adapter").resolve(f), adapter.resolve(f));
        }
        CliResult r = CliResult.run("logits", "--model", HUB.resolve("bases/llama").toString(), "--adapter", adapter.toString(),
                "--input", c.resolve("input_ids.json").toString(), "--output", dir.resolve("l.json").toString());
        assertEquals(0, r.status(), r.err());
        List<Double> ours = flat(JSON.readTree(dir.resolve("l.json").toFile()).get("logits"), new ArrayList<>());
        List<Double> theirs = flat(JSON.readTree(c.resolve("logits.json").toFile()).get("adapter_logits"), new ArrayList<>());
        assertEquals(theirs.size(), ours.size());
        double worst = 0;
        for (int i = 0; i < ours.size(); i++) {
            worst = Math.max(worst, Math.abs(ours.get(i) - theirs.get(i)));
        }
        System.out.printf("cli logits llama_unipelt (pytorch_adapter.bin) vs AdapterHub max|diff| = %.3g%n", worst);
        assertTrue(worst < 1e-4, "max |diff| " + worst);
        CliResult info = CliResult.run("info", "--model", HUB.resolve("bases/llama").toString(), "--adapter", adapter.toString());
        assertEquals(0, info.status(), info.err());
        assertTrue(info.out().contains("adapter:        UNION from " + adapter), info.out());
    }

    /** AdapterHub's train_adapter run (seq_bn on BERT, 5 SGD steps) continued from its saved directory. */
    @Test
    void trainFromAnAdapterHubDirectoryGivesAdapterHubsLosses(@TempDir Path dir) throws Exception {
        Path c = HUB.resolve("bert_seq_bn_train");
        JsonNode data = JSON.readTree(c.resolve("data.json").toFile());
        JsonNode expected = JSON.readTree(c.resolve("losses.json").toFile());
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < data.get("labels").size(); i++) {
            lines.add("{\"input_ids\": " + data.get("input_ids").get(i) + ", \"labels\": " + data.get("labels").get(i) + "}");
        }
        Path jsonl = Files.write(dir.resolve("d.jsonl"), lines);
        CliResult r = CliResult.run("train", "--model", HUB.resolve("bases/bert").toString(), "--init-adapter",
                c.resolve("initial").toString(), "--data", jsonl.toString(), "--optimizer", "sgd", "--lr", "0.1", "--max-steps",
                "5", "--batch-size", "2", "--no-shuffle", "--clip", "0", "--log-every", "0", "--device", "cpu", "--output",
                dir.resolve("out").toString());
        assertEquals(0, r.status(), r.err());
        List<String> metrics = Files.readAllLines(dir.resolve("out/metrics.jsonl"));
        assertEquals(5, metrics.size());
        for (int i = 0; i < 5; i++) {
            assertEquals(expected.get("losses").get(i).asDouble(), JSON.readTree(metrics.get(i)).get("loss").asDouble(), 1e-4,
                    "step " + (i + 1));
        }
        assertTrue(Files.isRegularFile(dir.resolve("out/adapter_model.safetensors")));
    }

    /**
     * {@code train --save-format adapterhub}: a Pfeiffer adapter trained for two steps is written in AdapterHub's layout
     * (AdapterHub's file and key names), and {@code logits --adapter DIR} of it gives the logits of the trained model,
     * whose exact weights the final {@code checkpoint-2/} (peft4j's layout) holds.
     */
    @Test
    void trainSavesAnAdapterHubDirectoryThatLogitsReloads(@TempDir Path dir) throws Exception {
        Path c = HUB.resolve("bert_seq_bn_train");
        JsonNode data = JSON.readTree(c.resolve("data.json").toFile());
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < data.get("labels").size(); i++) {
            lines.add("{\"input_ids\": " + data.get("input_ids").get(i) + ", \"labels\": " + data.get("labels").get(i) + "}");
        }
        Path jsonl = Files.write(dir.resolve("d.jsonl"), lines);
        Path out = dir.resolve("hub");
        String base = HUB.resolve("bases/bert").toString();
        CliResult r = CliResult.run("train", "--model", base, "--method", "bottleneck", "--data", jsonl.toString(),
                "--lr", "0.05", "--max-steps", "2", "--batch-size", "2", "--no-shuffle", "--log-every", "0", "--device", "cpu",
                "--checkpoint-every", "2", "--save-format", "adapterhub", "--output", out.toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("saved adapter to " + out + " (AdapterHub layout, adapter name 'default')"), r.out());
        for (String f : List.of("adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors")) {
            assertTrue(Files.isRegularFile(out.resolve(f)), f + " missing: AdapterHub's save_adapter files");
        }
        assertTrue(!Files.exists(out.resolve("adapter_model.safetensors")), "no HF PEFT weights file");
        JsonNode config = JSON.readTree(out.resolve("adapter_config.json").toFile());
        assertEquals("default", config.get("name").asText());
        assertEquals("bert", config.get("model_type").asText());
        assertEquals("BertForSequenceClassification", config.get("model_class").asText());
        assertTrue(!config.has("peft_type") && config.get("config").get("original_ln_before").asBoolean(), config.toString());
        assertEquals(16, config.get("config").get("reduction_factor").asInt(), "seq_bn's defaults");
        List<String> keys;
        try (io.github.peft4j.io.SafeTensorsFile st = io.github.peft4j.io.SafeTensorsFile.open(out.resolve("adapter.safetensors"))) {
            keys = st.names().stream().sorted().toList();
        }
        // AdapterHub's key names: Pfeiffer after the feed-forward block of each of the 2 layers, 4 tensors each
        assertEquals(8, keys.size(), keys.toString());
        assertTrue(keys.contains("bert.encoder.layer.0.output.adapters.default.adapter_down.0.weight"), keys.toString());
        assertTrue(keys.contains("bert.encoder.layer.1.output.adapters.default.adapter_up.bias"), keys.toString());
        try (io.github.peft4j.io.SafeTensorsFile st = io.github.peft4j.io.SafeTensorsFile.open(out.resolve("model_head.safetensors"))) {
            assertEquals(List.of("classifier.bias", "classifier.weight"), st.names().stream().sorted().toList(), "AdapterHub's static head");
        }
        Path input = c.resolve("../bert_seq_bn/input_ids.json").normalize();
        List<Double> viaHub = logits(base, out, input, dir.resolve("hub.json"));
        List<Double> viaCheckpoint = logits(base, out.resolve("checkpoint-2"), input, dir.resolve("ckpt.json"));
        List<Double> plain = logits(base, null, input, dir.resolve("plain.json"));
        double worst = 0;
        double moved = 0;
        for (int i = 0; i < viaHub.size(); i++) {
            worst = Math.max(worst, Math.abs(viaHub.get(i) - viaCheckpoint.get(i)));
            moved = Math.max(moved, Math.abs(viaHub.get(i) - plain.get(i)));
        }
        System.out.printf("cli train --save-format adapterhub: logits --adapter DIR vs the trained model max|diff| = %.3g"
                + " (training moved them by %.3g)%n", worst, moved);
        assertEquals(viaCheckpoint.size(), viaHub.size());
        assertTrue(worst < 1e-6, "max |diff| " + worst);
        assertTrue(moved > 1e-4, "the trained adapter and head must change the logits: " + moved);
    }

    /**
     * A feature-extraction checkpoint ({@code BertModel}) trained as a token classifier: {@code logits} loads the base
     * with the head AdapterHub's {@code model_class} and {@code head_config.json} name.
     */
    @Test
    void anAdapterHubTokenClassifierOnAFeatureExtractionCheckpointReloadsWithItsHead(@TempDir Path dir) throws Exception {
        Path base = Fixtures.root().resolve("../hf-peft-reverse/bert_encoder").normalize();
        List<String> lines = new ArrayList<>();
        java.util.Random rnd = new java.util.Random(3);
        for (int i = 0; i < 4; i++) {
            StringBuilder ids = new StringBuilder();
            StringBuilder labels = new StringBuilder();
            for (int j = 0; j < 6; j++) {
                ids.append(j == 0 ? "" : ", ").append(1 + rnd.nextInt(120));
                labels.append(j == 0 ? "" : ", ").append(rnd.nextInt(2));
            }
            lines.add("{\"input_ids\": [" + ids + "], \"labels\": [" + labels + "]}");
        }
        Path jsonl = Files.write(dir.resolve("d.jsonl"), lines);
        Path out = dir.resolve("hub");
        CliResult r = CliResult.run("train", "--model", base.toString(), "--task", "token-cls", "--method", "bottleneck",
                "--data", jsonl.toString(), "--lr", "0.05", "--max-steps", "2", "--batch-size", "2", "--no-shuffle",
                "--log-every", "0", "--device", "cpu", "--checkpoint-every", "2", "--save-format", "adapterhub", "--output",
                out.toString());
        assertEquals(0, r.status(), r.err());
        JsonNode config = JSON.readTree(out.resolve("adapter_config.json").toFile());
        assertEquals("BertForTokenClassification", config.get("model_class").asText());
        assertEquals(2, JSON.readTree(out.resolve("head_config.json").toFile()).get("num_labels").asInt());
        Path input = Files.writeString(dir.resolve("in.json"), "{\"input_ids\": [[5, 17, 42, 8], [11, 2, 77, 31]]}");
        List<Double> viaHub = logits(base.toString(), out, input, dir.resolve("hub.json"));
        List<Double> viaCheckpoint = logits(base.toString(), out.resolve("checkpoint-2"), input, dir.resolve("ckpt.json"));
        assertEquals(2 * 4 * 2, viaHub.size(), "[batch, seq, labels] of a token classifier");
        double worst = 0;
        for (int i = 0; i < viaHub.size(); i++) {
            worst = Math.max(worst, Math.abs(viaHub.get(i) - viaCheckpoint.get(i)));
        }
        System.out.printf("cli train --task token-cls --save-format adapterhub on BertModel: logits vs the trained model"
                + " max|diff| = %.3g%n", worst);
        assertTrue(worst < 1e-6, "max |diff| " + worst);
    }

    private static List<Double> logits(String base, Path adapter, Path input, Path to) throws Exception {
        List<String> args = new ArrayList<>(List.of("logits", "--model", base, "--input", input.toString(), "--output",
                to.toString()));
        if (adapter != null) {
            args.addAll(List.of("--adapter", adapter.toString()));
        }
        CliResult r = CliResult.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        return flat(JSON.readTree(to.toFile()).get("logits"), new ArrayList<>());
    }

    /** A method without an AdapterHub layout is refused before any training, in one line; a bad value names the choices. */
    @Test
    void saveFormatAdapterHubRefusesLoraBeforeTraining(@TempDir Path dir) throws Exception {
        Path jsonl = Files.write(dir.resolve("d.jsonl"), List.of("{\"input_ids\": [5, 6, 7], \"labels\": 1}"));
        Path out = dir.resolve("out");
        CliResult r = CliResult.run("train", "--model", HUB.resolve("bases/bert").toString(), "--method", "lora", "--target-modules", "query,value", "--data",
                jsonl.toString(), "--max-steps", "1", "--device", "cpu", "--save-format", "adapterhub", "--output", out.toString());
        assertEquals(2, r.status(), r.err());
        assertEquals("", r.out(), "nothing trained or reported");
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("peft4j: train: --save-format adapterhub: adapter 'default' is LORA, not a bottleneck or"
                + " union adapter"), r.err());
        assertTrue(!Files.exists(out), "nothing written");
        // AdapterHub's static head holds the classifier only: a pooler trained whole could not be saved
        CliResult pooler = CliResult.run("train", "--model", HUB.resolve("bases/bert").toString(), "--method", "bottleneck",
                "--modules-to-save", "pooler.dense,classifier", "--data", jsonl.toString(), "--max-steps", "1", "--device",
                "cpu", "--save-format", "adapterhub", "--output", out.toString());
        assertEquals(2, pooler.status(), pooler.err());
        assertEquals("", pooler.out());
        assertEquals(1, pooler.err().strip().lines().count(), pooler.err());
        assertTrue(pooler.err().contains("also trains [bert.pooler.dense] whole (modules_to_save)"), pooler.err());
        assertTrue(!Files.exists(out), "nothing written");
        CliResult bad = CliResult.run("train", "--save-format", "pickle");
        assertEquals(2, bad.status(), bad.err());
        assertTrue(bad.err().startsWith("peft4j: train: --save-format 'pickle': expected hf or adapterhub"), bad.err());
    }
}
