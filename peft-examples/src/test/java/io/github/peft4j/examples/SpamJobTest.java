package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.TestTokenizers;
import io.github.peft4j.testing.TinyModels;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The spam job's wiring on a tiny random BERT (a bare encoder saved like the imported MiniLM, with a WordPiece
 * tokenizer) and 40 synthetic emails; and {@code peft4j train} on the same prepared-data files and model layout.
 */
class SpamJobTest {
    @TempDir
    static Path tmp;
    static Path model;
    static Path data;

    private static final String[] SPAM = {"say yes on this acme fox", "the acme corp is it", "yes yes say it on acme",
        "this acme fox is in"};
    private static final String[] HAM = {"john met mary at the dog", "the lazy dog is over", "hi mary and john met",
        "john and the lazy dog"};

    @BeforeAll
    static void setUp() throws IOException {
        model = tmp.resolve("model");
        Engine.getInstance().setRandomSeed(3);
        try (TransformerModel m = Models.random(TinyModels.config("{\"model_type\":\"bert\",\"hidden_size\":64,"
                + "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":128,"
                + "\"max_position_embeddings\":64,\"type_vocab_size\":2,\"hidden_dropout_prob\":0,"
                + "\"attention_probs_dropout_prob\":0,\"initializer_range\":0.2}"), Device.cpu(), DataType.FLOAT32,
                TaskType.FEATURE_EXTRACTION)) {
            m.save(model); // no classifier, like the imported MiniLM; num_labels defaults to 2
        }
        Files.copy(TestTokenizers.wordpiece().resolve("tokenizer.json"), model.resolve("tokenizer.json"));
        data = tmp.resolve("data");
        Files.createDirectories(data);
        Random r = new Random(5);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            boolean spam = i % 2 == 0;
            String group = spam ? "spam-1" : i % 4 == 1 ? "hard-ham-1" : "easy-ham-1";
            String[] pool = spam ? SPAM : HAM;
            String text = pool[r.nextInt(pool.length)] + " " + pool[r.nextInt(pool.length)];
            lines.add("{\"text\":\"" + text + "\",\"label\":\"" + (spam ? "spam" : "ham") + "\",\"group\":\"" + group
                    + "\",\"id\":\"" + group + "/" + i + "\"}");
        }
        Files.write(data.resolve("train.jsonl"), lines.subList(0, 24));
        Files.write(data.resolve("validation.jsonl"), lines.subList(24, 32));
        Files.write(data.resolve("test.jsonl"), lines.subList(32, 40));
    }

    @Test
    void jobTrainsEveryMethodAndWritesTheReport() throws IOException {
        Path work = tmp.resolve("work");
        SpamJob.Settings s = new SpamJob.Settings().work(work).data(data).model(model).maxLength(32).batchSize(4)
                .evalExamples(8).loraR(2).virtualTokens(4).demo(3).results(work.resolve("results.md"))
                .chart(work.resolve("curves.png"));
        for (String m : SpamJob.DEFAULT_METHODS) {
            s.steps(m, 6).lr(m, m.equals("full") ? 1e-3 : 1e-2);
        }
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        SpamJob.Result r = SpamJob.run(s, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);

        Map<String, SpamJob.Row> rows = r.rows().stream().collect(Collectors.toMap(SpamJob.Row::method, x -> x));
        assertEquals(SpamJob.DEFAULT_METHODS, r.rows().stream().map(SpamJob.Row::method).toList());
        long head = 64 * 64 + 64 + 2 * 64 + 2; // pooler.dense + classifier
        long base = rows.get("probe").total(); // the SEQ_CLS model: encoder + pooler + classifier
        assertEquals(head, rows.get("probe").trainable());
        // 2 layers x {query, key, value, attention.output.dense} (64 x 64) x (A 2x64 + B 64x2)
        assertEquals(2 * 4 * (2 * 64 + 64 * 2) + head, rows.get("lora").trainable());
        // biases: per layer q,k,v,attn-out (4x64) + attn LayerNorm 64 + intermediate 128 + out 64 + LayerNorm 64;
        // plus the embeddings' LayerNorm
        assertEquals(2 * (4 * 64 + 64 + 128 + 64 + 64) + 64 + head, rows.get("bitfit").trainable());
        assertEquals(4 * 64 + head, rows.get("prompt").trainable()); // virtual tokens + pooler.dense + classifier
        assertEquals(base, rows.get("full").trainable());
        assertEquals(100.0, rows.get("full").trainablePercent(), 1e-9);
        for (SpamJob.Row row : r.rows()) {
            assertTrue(row.accuracy() >= 0 && row.accuracy() <= 1, row.toString());
            assertTrue(row.macroF1() >= 0 && row.macroF1() <= 1, row.toString());
            assertTrue(row.hardHamAccuracy() >= 0 && row.hardHamAccuracy() <= 1, row.toString()); // test has hard ham
            assertTrue(row.trainSeconds() > 0, row.toString());
            assertTrue(Files.exists(row.saved()), row.toString());
            assertTrue(Files.isRegularFile(work.resolve("runs").resolve(row.method()).resolve("metrics.jsonl")));
            assertTrue(out.contains("| " + row.method() + " "), out);
        }
        // the test set is 4 spam + 4 ham; accuracy is a multiple of 1/8
        for (SpamJob.Row row : r.rows()) {
            assertEquals(0, Math.abs(row.accuracy() * 8 - Math.round(row.accuracy() * 8)), 1e-9);
        }
        assertTrue(Files.isRegularFile(work.resolve("runs/lora/adapter/adapter_config.json")));
        // the prompt adapter is complete: virtual tokens, pooler.dense and classifier (HF prompt-learning keys)
        try (SafeTensorsFile f = SafeTensorsFile.open(work.resolve("runs/prompt/adapter/adapter_model.safetensors"))) {
            assertEquals(List.of("base_model.bert.pooler.dense.bias", "base_model.bert.pooler.dense.weight",
                    "base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings"),
                    f.names().stream().sorted().toList());
        }
        assertTrue(Files.isRegularFile(work.resolve("runs/probe/head.safetensors")));
        assertTrue(Files.isRegularFile(work.resolve("runs/full/model/model.safetensors")));
        // the reloaded LoRA adapter (on a model initialised with another seed) gives the in-memory scores
        assertEquals(3, r.demos().size());
        assertTrue(r.reloadMaxDiff() < 1e-5, "reload diff " + r.reloadMaxDiff());
        String md = Files.readString(work.resolve("results.md"));
        assertTrue(md.contains(r.table()), md);
        assertTrue(md.contains("![training curves](curves.png)"), md);
        assertTrue(md.contains("Not run here: dora, qlora, ptuning, pfeiffer, houlsby, parallel, unipelt, adalora, moe-lora,"
                + " ln-tuning, last-k, sparse, learned-mask (select them with `--methods`"), md);
        byte[] png = Files.readAllBytes(work.resolve("curves.png"));
        assertTrue(png.length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G');
        assertTrue(out.contains("held-out test emails classified by the LoRA adapter"), out);
    }

    @Test
    void methodsAllAddsDoraPtuningAndPfeifferWhoseAdaptersReloadWithTheSameScores() throws IOException {
        Path work = tmp.resolve("work-all");
        SpamJob.Settings s = new SpamJob.Settings().work(work).data(data).model(model).maxLength(32).batchSize(4)
                .evalExamples(8).loraR(2).virtualTokens(4).demo(0).results(work.resolve("results.md"))
                .chart(work.resolve("curves.png")).methods(List.of("ptuning", SpamJob.ALL));
        for (String m : SpamJob.METHODS) {
            s.steps(m, 4).lr(m, m.equals("full") ? 1e-3 : 1e-2);
        }
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        SpamJob.Result r = SpamJob.run(s, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertEquals(List.of("probe", "lora", "dora", "qlora", "bitfit", "prompt", "ptuning", "pfeiffer", "houlsby", "parallel", "unipelt", "adalora", "moe-lora", "ln-tuning", "last-k", "sparse", "learned-mask", "full"),
                r.rows().stream().map(SpamJob.Row::method).toList());
        Map<String, SpamJob.Row> rows = r.rows().stream().collect(Collectors.toMap(SpamJob.Row::method, x -> x));
        long head = 64 * 64 + 64 + 2 * 64 + 2; // pooler.dense + classifier
        long lora = 2 * 4 * (2 * 64 + 64 * 2);
        assertEquals(lora + head, rows.get("lora").trainable());
        assertEquals(lora + 2 * 4 * 64 + head, rows.get("dora").trainable()); // + a magnitude per output feature
        assertEquals(lora + head, rows.get("qlora").trainable()); // the lora row over 4-bit layers
        // qlora's base: 2 layers x (q, k, v, attention.output.dense 64x64 + intermediate 64x128 + output 128x64) in 4 bits
        SpamJob.BaseBytes qb = rows.get("qlora").baseBytes();
        assertEquals(2 * (4 * 64 * 64 + 2 * 64 * 128), qb.fourBitWeights());
        assertEquals(rows.get("lora").baseBytes().held(), qb.fp32(), "the fp32 base is the lora row's");
        assertEquals(0, rows.get("lora").baseBytes().fourBitWeights());
        // the 4-bit weights take 0.5 byte each + 1 per block of 64, + per layer its code tables and quant state (1.3 KB)
        long saved = qb.fp32() - qb.held();
        long fourBitBytes = qb.fourBitWeights() / 2 + qb.fourBitWeights() / 64;
        assertTrue(saved < 4 * qb.fourBitWeights() - fourBitBytes && saved > 4 * qb.fourBitWeights() - fourBitBytes - 12 * 1600,
                qb + " vs " + rows.get("lora").baseBytes());
        // 4 virtual-token embeddings + the MLP encoder Linear(64,64) x 3
        assertEquals(4 * 64 + 3 * (64 * 64 + 64) + head, rows.get("ptuning").trainable());
        // seq_bn: one adapter per layer after the feed-forward block, 64 -> 64/16 = 4 -> 64
        assertEquals(2 * (64 * 4 + 4 + 4 * 64 + 64) + head, rows.get("pfeiffer").trainable());
        // adalora: A (2 x 64) + E (2 x 1) + B (64 x 2) per module at init_r 2
        assertEquals(2 * 4 * (2 * 64 + 2 + 64 * 2) + head, rows.get("adalora").trainable());
        // moe-lora: 4 experts of rank 1 and a router (4 x 64) per module
        assertEquals(2 * 4 * (4 * 64 + 4 * 64 + 4 * 64) + head, rows.get("moe-lora").trainable());
        // double_seq_bn: two per layer; par_bn: 64 -> 32 -> 64 after each feed-forward block
        assertEquals(2 * 2 * (64 * 4 + 4 + 4 * 64 + 64) + head, rows.get("houlsby").trainable());
        assertEquals(2 * (64 * 32 + 32 + 32 * 64 + 64) + head, rows.get("parallel").trainable());
        // UniPELT: prefix wte (10, 64) + MLP 64 -> 512 -> 2 layers x 2 x 64, a prefix gate per layer; seq_bn + its gate;
        // LoRA r 8 on query and value + their gates
        long prefix = 10 * 64 + (64 * 512 + 512) + (512 * 256 + 256) + 2 * (64 + 1);
        long bn = 2 * (64 * 4 + 4 + 4 * 64 + 64 + 64 + 1);
        long loraU = 2 * 2 * (8 * 64 + 64 * 8 + 64 + 1);
        assertEquals(prefix + bn + loraU + head, rows.get("unipelt").trainable());
        // the selective rows: 5 LayerNorms of 2 x 64; layer 1 whole; 1 % of each of the 2 x 6 encoder linear weights;
        // a difference and a gate per entry of the 2 x 4 attention weights
        assertEquals(5 * 128 + head, rows.get("ln-tuning").trainable());
        assertEquals(4 * (64 * 64 + 64) + 2 * 128 + (64 * 128 + 128) + (128 * 64 + 64) + head, rows.get("last-k").trainable());
        assertEquals(2 * (4 * 41 + 82 + 82) + head, rows.get("sparse").trainable());
        assertEquals(2 * 2 * 4 * 64 * 64 + head, rows.get("learned-mask").trainable());
        for (String m : List.of("dora", "qlora", "ptuning", "pfeiffer", "houlsby", "parallel", "unipelt", "adalora", "moe-lora", "ln-tuning", "last-k", "sparse", "learned-mask")) {
            SpamJob.Row row = rows.get(m);
            assertEquals(work.resolve("runs").resolve(m).resolve("adapter"), row.saved());
            assertTrue(Files.isRegularFile(row.saved().resolve("adapter_config.json")), row.toString());
            assertTrue(row.reloadMaxDiff() < 1e-5, row.toString());
            assertTrue(out.contains("| " + m + " "), out);
            assertEquals(0, Math.abs(row.accuracy() * 8 - Math.round(row.accuracy() * 8)), 1e-9);
        }
        for (String m : SpamJob.DEFAULT_METHODS) {
            assertTrue(Double.isNaN(rows.get(m).reloadMaxDiff()), m);
        }
        assertTrue(Files.readString(work.resolve("runs/dora/adapter/adapter_config.json")).contains("\"use_dora\" : true"));
        assertTrue(Files.readString(work.resolve("runs/ptuning/adapter/adapter_config.json")).contains("\"P_TUNING\""));
        assertTrue(Files.readString(work.resolve("runs/pfeiffer/adapter/adapter_config.json")).contains("\"BOTTLENECK\""));
        assertTrue(Files.readString(work.resolve("runs/adalora/adapter/adapter_config.json")).contains("\"rank_pattern\" : {"));
        assertTrue(Files.readString(work.resolve("runs/moe-lora/adapter/adapter_config.json")).contains("\"MOE_LORA\""));
        assertTrue(Files.readString(work.resolve("runs/unipelt/adapter/adapter_config.json")).contains("\"UNION\""));
        // every adapter carries its trained pooler and classifier
        for (String m : List.of("dora", "qlora", "ptuning", "pfeiffer", "houlsby", "parallel", "unipelt", "adalora", "moe-lora")) {
            try (SafeTensorsFile f = SafeTensorsFile.open(work.resolve("runs").resolve(m)
                    .resolve("adapter/adapter_model.safetensors"))) {
                assertEquals(4, f.names().stream().filter(k -> k.contains("pooler.dense.") || k.contains("classifier."))
                        .count(), m + ": " + f.names());
            }
        }
        String md = Files.readString(work.resolve("results.md"));
        assertTrue(md.contains(r.table()), md);
        assertTrue(md.contains("(loaded back from disk: max |test score - in-memory score| = "), md);
        assertTrue(md.contains(String.format(java.util.Locale.ROOT, "model bytes: %,d", qb.held())), md);
        assertTrue(!md.contains("Not run here"), md);
        // the adalora row reports its final budget: target_r 1 x 8 modules
        assertTrue(md.contains("; final budget 8 ranks of 16 (init_r 2, target_r 1, 8 modules; tinit 0, tfinal 0, deltaT 1);"
                + " kept ranks per layer: query ["), md);
        assertTrue(out.contains("reloaded from disk: max |test score - in-memory score| = "), out);
    }

    @Test
    void trainCommandAcceptsThePreparedDataAndTheModelDirectory() throws IOException {
        Path outDir = tmp.resolve("train-out");
        CliResult r = CliResult.run("train", "--model", model.toString(), "--data",
            data.resolve("train.jsonl").toString(), "--eval-data", data.resolve("validation.jsonl").toString(),
            "--format", "classification", "--task", "seq-cls", "--method", "lora", "--r", "2", "--target-modules",
            "query,value", "--max-length", "32", "--batch-size", "4", "--max-steps", "4", "--lr", "1e-2",
            "--metric", "accuracy", "--output", outDir.toString());
        String out = r.out();
        assertEquals(0, r.status(), r.err());
        assertTrue(out.contains("trained 4 steps"), out);
        assertTrue(out.contains("eval: {loss="), out);
        String config = Files.readString(outDir.resolve("adapter_config.json"));
        assertTrue(config.contains("\"task_type\" : \"SEQ_CLS\""), config);
        try (SafeTensorsFile f = SafeTensorsFile.open(outDir.resolve("adapter_model.safetensors"))) {
            // HF PEFT's keys: the LoRA matrices and the automatically trained classifier
            assertTrue(f.names().contains("base_model.model.classifier.weight"), f.names().toString());
            assertTrue(f.names().contains("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight"),
                    f.names().toString());
        }
    }
}
