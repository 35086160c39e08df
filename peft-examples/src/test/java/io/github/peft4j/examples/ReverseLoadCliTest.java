package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.testing.TestTokenizers;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a user of the spam job does next (issue 18): the job's own adapters, trained on a bare encoder directory
 * ({@code fixtures/hf-peft-reverse/bert_encoder}, the imported-MiniLM layout: {@code BertModel}, no pooler, no
 * classifier), load back through {@code peft4j logits | info | merge --model <that directory>} without editing any
 * file; and pre-tokenized sequence and token classification train from the command line.
 */
class ReverseLoadCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    static Path tmp;
    static Path model;
    static Path input;

    @BeforeAll
    static void setUp() throws IOException {
        model = tmp.resolve("spam-job-model");
        Files.createDirectories(model);
        Path encoder = Fixtures.root().resolveSibling("hf-peft-reverse").resolve("bert_encoder");
        for (String f : List.of("config.json", "model.safetensors")) {
            Files.copy(encoder.resolve(f), model.resolve(f));
        }
        Files.copy(TestTokenizers.wordpiece().resolve("tokenizer.json"), model.resolve("tokenizer.json"));
        input = tmp.resolve("ids.json");
        Files.writeString(input, "{\"input_ids\": [[2, 15, 30, 7, 9, 3], [2, 9, 11, 3, 0, 0]],"
                + " \"attention_mask\": [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]}");
    }

    /** Runs the spam job (LoRA and prompt tuning, a few steps) on the bare encoder and synthetic emails. */
    private static Path spamJob() throws IOException {
        Path work = tmp.resolve("spam-job");
        if (Files.isDirectory(work.resolve("runs"))) {
            return work;
        }
        Path data = tmp.resolve("data");
        Files.createDirectories(data);
        String[] spam = {"say yes on this acme fox", "the acme corp is it", "yes yes say it on acme"};
        String[] ham = {"john met mary at the dog", "the lazy dog is over", "hi mary and john met"};
        Random r = new Random(7);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 24; i++) {
            boolean s = i % 2 == 0;
            String group = s ? "spam-1" : i % 4 == 1 ? "hard-ham-1" : "easy-ham-1";
            String[] pool = s ? spam : ham;
            lines.add("{\"text\":\"" + pool[r.nextInt(pool.length)] + " " + pool[r.nextInt(pool.length)]
                    + "\",\"label\":\"" + (s ? "spam" : "ham") + "\",\"group\":\"" + group + "\",\"id\":\"" + group
                    + "/" + i + "\"}");
        }
        Files.write(data.resolve("train.jsonl"), lines.subList(0, 12));
        Files.write(data.resolve("validation.jsonl"), lines.subList(12, 18));
        Files.write(data.resolve("test.jsonl"), lines.subList(18, 24));
        SpamJob.Settings s = new SpamJob.Settings().work(work).data(data).model(model).methods(List.of("lora", "prompt"))
                .maxLength(16).batchSize(4).evalExamples(6).loraR(2).virtualTokens(3).demo(1)
                .results(work.resolve("results.md")).chart(work.resolve("curves.png"));
        s.steps("lora", 3).lr("lora", 1e-2).steps("prompt", 3).lr("prompt", 1e-2);
        SpamJob.run(s, new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
        return work;
    }

    private static float[] cliLogits(String... modelAndAdapter) throws IOException {
        Path out = Files.createTempFile(tmp, "logits", ".json");
        List<String> args = new ArrayList<>(List.of("logits"));
        args.addAll(List.of(modelAndAdapter));
        args.addAll(List.of("--input", input.toString(), "--output", out.toString()));
        CliResult r = CliResult.run(args.toArray(new String[0]));
        assertEquals(0, r.status(), r.err());
        JsonNode n = JSON.readTree(out.toFile());
        assertEquals("[2,2]", n.get("shape").toString(), "two emails, spam or ham");
        List<Float> v = new ArrayList<>();
        n.get("logits").forEach(row -> row.forEach(x -> v.add(x.floatValue())));
        float[] a = new float[v.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = v.get(i);
        }
        return a;
    }

    /** The adapter's logits through the explicit head (as SpamJob's own reload check loads it). */
    private static float[] explicitLogits(Path adapter) {
        try (TransformerModel m = Models.load(model, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS);
                NDManager nd = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(m);
            peft.loadAdapter(adapter, PeftModel.DEFAULT, false);
            NDArray ids = nd.create(new long[] {2, 15, 30, 7, 9, 3, 2, 9, 11, 3, 0, 0}, new Shape(2, 6));
            NDArray mask = nd.create(new long[] {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, new Shape(2, 6));
            return peft.forward(ModelInput.of(ids, mask)).logits().toFloatArray();
        }
    }

    private static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    @Test
    void spamJobAdaptersLoadBackOnTheJobsModelDirectory() throws IOException {
        Path work = spamJob();
        for (String method : List.of("lora", "prompt")) {
            Path adapter = work.resolve("runs").resolve(method).resolve("adapter");
            float[] cli = cliLogits("--model", model.toString(), "--adapter", adapter.toString());
            double d = maxDiff(cli, explicitLogits(adapter));
            System.out.printf("spam-job %s adapter: peft4j logits --model <bare encoder> vs explicit head max|diff| = %.3g%n",
                    method, d);
            assertEquals(0.0, d, 1e-6, method);
            assertTrue(Math.abs(cli[0] - cli[1]) > 0 || Math.abs(cli[2] - cli[3]) > 0, "a trained head, not zeros");

            CliResult info = CliResult.run("info", "--model", model.toString(), "--adapter", adapter.toString());
            assertEquals(0, info.status(), info.err());
            assertTrue(info.out().contains("architecture:   BertForSequenceClassification (model_type bert)"), info.out());
            assertTrue(info.out().contains("task:           SEQ_CLS"), info.out());
        }
        // fix 2: the TEXT-init prompt adapter names the tokenizer (the model directory) and the init text
        JsonNode prompt = JSON.readTree(work.resolve("runs/prompt/adapter/adapter_config.json").toFile());
        assertEquals("TEXT", prompt.get("prompt_tuning_init").asText());
        assertEquals(SpamJob.PROMPT_INIT_TEXT, prompt.get("prompt_tuning_init_text").asText());
        assertEquals(model.toString(), prompt.get("tokenizer_name_or_path").asText());

        // merge: the merged checkpoint names its head and gives the adapter's logits without the adapter
        Path lora = work.resolve("runs/lora/adapter");
        Path merged = tmp.resolve("merged");
        CliResult m = CliResult.run("merge", "--model", model.toString(), "--adapter", lora.toString(), "--output",
                merged.toString());
        assertEquals(0, m.status(), m.err());
        assertEquals("BertForSequenceClassification",
                JSON.readTree(merged.resolve("config.json").toFile()).get("architectures").get(0).asText());
        double dm = maxDiff(cliLogits("--model", merged.toString()), cliLogits("--model", model.toString(), "--adapter",
                lora.toString()));
        System.out.printf("spam-job lora merged vs adapter max|diff| = %.3g%n", dm);
        assertTrue(dm < 1e-4, "merged " + dm);
    }

    @Test
    void pretokenizedSequenceAndTokenClassificationTrainFromTheCli() throws IOException {
        Path seq = tmp.resolve("seq.jsonl");
        Files.writeString(seq, String.join("\n",
                "{\"input_ids\": [2, 15, 30, 7, 3], \"label\": 0}",
                "{\"input_ids\": [2, 9, 11, 3], \"label\": 1}",
                "{\"input_ids\": [2, 40, 41, 42, 43, 3], \"label\": 2}",
                "{\"input_ids\": [2, 8, 3], \"labels\": 1}"));
        Path seqOut = tmp.resolve("seq-out");
        // a bare encoder trained for seq-cls: 2 labels by default; 3 classes need num_labels 3
        Path three = tmp.resolve("three-labels");
        Files.createDirectories(three);
        Files.copy(model.resolve("model.safetensors"), three.resolve("model.safetensors"));
        com.fasterxml.jackson.databind.node.ObjectNode cfg = (com.fasterxml.jackson.databind.node.ObjectNode)
                JSON.readTree(model.resolve("config.json").toFile());
        cfg.put("num_labels", 3);
        Files.writeString(three.resolve("config.json"), cfg.toString());
        CliResult r = CliResult.run("train", "--model", three.toString(), "--data", seq.toString(), "--format",
                "pretokenized", "--task", "seq-cls", "--method", "lora", "--r", "2", "--target-modules", "query,value",
                "--batch-size", "4", "--max-steps", "3", "--lr", "1e-2", "--output", seqOut.toString());
        assertEquals(0, r.status(), r.err());
        assertTrue(r.out().contains("trained 3 steps"), r.out());
        JsonNode c = JSON.readTree(seqOut.resolve("adapter_config.json").toFile());
        assertEquals("SEQ_CLS", c.get("task_type").asText());
        // and the adapter loads back on the bare directory with its 3-label head, from the adapter alone
        Path out = tmp.resolve("seq-logits.json");
        Files.writeString(tmp.resolve("one.json"), "{\"input_ids\": [[2, 15, 30, 7, 3]]}");
        CliResult l = CliResult.run("logits", "--model", model.toString(), "--adapter", seqOut.toString(), "--input",
                tmp.resolve("one.json").toString(), "--output", out.toString());
        assertEquals(0, l.status(), l.err());
        assertEquals("[1,3]", JSON.readTree(out.toFile()).get("shape").toString());

        Path tok = tmp.resolve("tok.jsonl");
        Files.writeString(tok, String.join("\n",
                "{\"input_ids\": [2, 15, 30, 7, 3], \"labels\": [-100, 1, 0, 1, -100]}",
                "{\"input_ids\": [2, 9, 11, 3], \"labels\": [-100, 0, 1, -100]}"));
        Path tokOut = tmp.resolve("tok-out");
        CliResult t = CliResult.run("train", "--model", model.toString(), "--data", tok.toString(), "--format",
                "pretokenized", "--task", "token-cls", "--method", "lora", "--r", "2", "--target-modules",
                "query,value", "--batch-size", "2", "--max-steps", "2", "--lr", "1e-2", "--output", tokOut.toString());
        assertEquals(0, t.status(), t.err());
        assertEquals("TOKEN_CLS", JSON.readTree(tokOut.resolve("adapter_config.json").toFile()).get("task_type").asText());

        // records that do not fit the task fail when the data is read, naming file and line, without a stack trace
        Path bad = tmp.resolve("bad.jsonl");
        Files.writeString(bad, "{\"input_ids\": [2, 15, 3], \"label\": 1}\n{\"input_ids\": [2, 9, 3, 4, 5]}\n");
        CliResult b = CliResult.run("train", "--model", model.toString(), "--data", bad.toString(), "--format",
                "pretokenized", "--task", "seq-cls", "--method", "lora", "--r", "2", "--target-modules", "query",
                "--max-steps", "1", "--output", tmp.resolve("bad-out").toString());
        assertEquals(2, b.status(), b.err());
        assertEquals("peft4j: " + bad + ":2: missing field \"label\" (seq-cls takes one class per record: \"label\": int"
                + " in 0..1)", b.err().strip());
        assertFalse(Files.exists(tmp.resolve("bad-out").resolve("adapter_config.json")));
        CliResult bt = CliResult.run("train", "--model", model.toString(), "--data", seq.toString(), "--format",
                "pretokenized", "--task", "token-cls", "--method", "lora", "--r", "2", "--target-modules", "query",
                "--max-steps", "1", "--output", tmp.resolve("bad-out2").toString());
        assertEquals(2, bt.status(), bt.err());
        assertTrue(bt.err().startsWith("peft4j: " + seq + ":1: \"label\" is one class per record (seq-cls)"), bt.err());
    }
}
