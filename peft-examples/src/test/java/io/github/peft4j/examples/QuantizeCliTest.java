package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.TensorDType;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code peft4j quantize} writes the checkpoint transformers + bitsandbytes write (make_bnb_fixtures.py), tensor for
 * tensor; {@code logits} / {@code generate} / {@code train --quantize} quantise on load; {@code merge} into a 4-bit
 * base requantises as HF PEFT, or writes a dense checkpoint with {@code --dense}.
 */
class QuantizeCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String NF4 = "../bnb/llama_nf4_dq";

    @TempDir
    Path tmp;

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "llama_lora|../bnb/llama_nf4_dq|--quant-type nf4 --double-quant",
        "llama_lora|../bnb/llama_fp4_skip|--quant-type fp4 --skip-modules lm_head,o_proj",
        "gpt2_lora|../bnb/gpt2_nf4_dq|--double-quant",
        "bert_lora|../bnb/bert_nf4_dq|--double-quant",
        "bert_lora|../bnb/bert_nf4_dq_skip|--double-quant --skip-modules pooler,classifier"})
    void quantizeWritesTransformersCheckpoint(String dense, String bnbCase, String options) throws Exception {
        Path out = tmp.resolve("q");
        List<String> args = new ArrayList<>(List.of("quantize", "--model", Fixtures.dir(dense).resolve("base").toString(),
                "--output", out.toString()));
        args.addAll(List.of(options.split(" ")));
        CliResult r = CliResult.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        System.out.print(r.out());
        Path bnbDir = Fixtures.dir(bnbCase).resolve("base");
        long compared = 0;
        try (SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("model.safetensors"));
                SafeTensorsFile hf = SafeTensorsFile.open(bnbDir.resolve("model.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            assertEquals(new TreeSet<>(hf.names()), new TreeSet<>(ours.names()), "tensor names");
            for (String k : hf.names()) {
                assertEquals(hf.info(k).dtype(), ours.info(k).dtype(), k);
                assertArrayEquals(hf.info(k).shape(), ours.info(k).shape(), k);
                assertArrayEquals(hf.load(k, m).toByteArray(), ours.load(k, m).toByteArray(), k);
                compared++;
            }
        }
        JsonNode ourConfig = JSON.readTree(out.resolve("config.json").toFile());
        JsonNode hfConfig = JSON.readTree(bnbDir.resolve("config.json").toFile());
        assertEquals(hfConfig.get("quantization_config"), ourConfig.get("quantization_config"), "quantization_config");
        // every other field is the source config's (transformers 5 rewrites some: dtype, transformers_version, rope)
        JsonNode source = JSON.readTree(Fixtures.dir(dense).resolve("base/config.json").toFile());
        source.fieldNames().forEachRemaining(k -> assertEquals(source.get(k), ourConfig.get(k), "config " + k));
        int keys = 0;
        for (var it = hfConfig.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (ourConfig.has(k) && hfConfig.get(k).equals(ourConfig.get(k))) {
                keys++;
            }
        }
        System.out.printf("quantize %s: %d tensors equal transformers + bitsandbytes' checkpoint; %d of %d config fields"
                + " equal, quantization_config among them%n", bnbCase, compared, keys, hfConfig.size());
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(List.of("q"), s.map(p -> p.getFileName().toString()).toList(), "no temporary left behind");
        }
    }

    @Test
    void quantizeRefusesBadInput() throws Exception {
        String dense = Fixtures.dir("llama_lora").resolve("base").toString();
        Path out = tmp.resolve("q");
        CliResult bs = CliResult.run("quantize", "--model", dense, "--blocksize", "48", "--output", out.toString());
        assertEquals(2, bs.status());
        assertEquals("peft4j: quantize: 4-bit block size must be a power of two from 32 to 4096, got 48", bs.err().trim());
        CliResult type = CliResult.run("quantize", "--model", dense, "--quant-type", "int4", "--output", out.toString());
        assertEquals(2, type.status());
        assertTrue(type.err().contains("'int4': expected nf4 or fp4"), type.err());
        CliResult again = CliResult.run("quantize", "--model", Fixtures.dir(NF4).resolve("base").toString(), "--output",
                out.toString());
        assertEquals(2, again.status());
        assertTrue(again.err().contains("already 4-bit quantised"), again.err());
        assertEquals(0, CliResult.run("quantize", "--model", dense, "--blocksize", "128", "--output", out.toString()).status());
        CliResult busy = CliResult.run("quantize", "--model", dense, "--output", out.toString());
        assertEquals(2, busy.status());
        assertTrue(busy.err().contains("is not empty (use --force to replace it)"), busy.err());
        // another block size is recorded per tensor, and such a checkpoint loads
        try (SafeTensorsFile f = SafeTensorsFile.open(out.resolve("model.safetensors")); NDManager m = NDManager.newBaseManager()) {
            String state = new String(f.load("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4", m)
                    .toByteArray(), java.nio.charset.StandardCharsets.UTF_8);
            assertTrue(state.contains("\"blocksize\": 128"), state);
            assertEquals(4096 / 128, f.info("model.layers.0.self_attn.q_proj.weight.absmax").shape()[0]);
        }
        Path logits = tmp.resolve("l.json");
        CliResult l = CliResult.run("logits", "--model", out.toString(), "--input",
                Fixtures.dir(NF4).resolve("input_ids.json").toString(), "--output", logits.toString());
        assertEquals(0, l.status(), l.err());
    }

    private static NDArray logitsOf(NDManager m, Path file) throws Exception {
        JsonNode j = JSON.readTree(file.toFile());
        JsonNode v = j.get("logits");
        List<Float> flat = new ArrayList<>();
        List<Long> shape = new ArrayList<>();
        JsonNode n = v;
        while (n.isArray()) {
            shape.add((long) n.size());
            n = n.get(0);
        }
        collect(v, flat);
        float[] a = new float[flat.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = flat.get(i);
        }
        return m.create(a, new ai.djl.ndarray.types.Shape(shape.stream().mapToLong(Long::longValue).toArray()));
    }

    private static void collect(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(c -> collect(c, out));
        } else {
            out.add((float) n.asDouble());
        }
    }

    private double logitsVs(String model, String expectedFile, String key, String... extra) throws Exception {
        Path out = tmp.resolve("logits-" + System.nanoTime() + ".json");
        List<String> args = new ArrayList<>(List.of("logits", "--model", model, "--input",
                Fixtures.dir(NF4).resolve("input_ids.json").toString(), "--output", out.toString()));
        args.addAll(List.of(extra));
        CliResult r = CliResult.run(args.toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        try (NDManager m = NDManager.newBaseManager()) {
            return Fixtures.maxAbsDiff(logitsOf(m, out), Fixtures.logits(m, NF4, expectedFile, key));
        }
    }

    @Test
    void logitsQuantiseOnLoadOrReadABnbCheckpoint() throws Exception {
        String dense = Fixtures.dir("llama_lora").resolve("base").toString();
        double onLoad = logitsVs(dense, "logits.json", "base_logits", "--quantize", "nf4", "--double-quant");
        double packed = logitsVs(Fixtures.dir(NF4).resolve("base").toString(), "logits.json", "base_logits");
        double adapter = logitsVs(dense, "logits.json", "adapter_logits", "--quantize", "nf4", "--double-quant", "--adapter",
                Fixtures.dir(NF4).resolve("adapter").toString());
        System.out.printf("logits --quantize nf4 --double-quant vs transformers + bnb: %.3g; bnb checkpoint: %.3g;"
                + " with the LoRA adapter: %.3g%n", onLoad, packed, adapter);
        assertTrue(onLoad < 1e-4 && packed < 1e-4 && adapter < 1e-4, onLoad + " " + packed + " " + adapter);
        CliResult dq = CliResult.run("logits", "--model", dense, "--double-quant", "--input",
                Fixtures.dir(NF4).resolve("input_ids.json").toString(), "--output", tmp.resolve("x.json").toString());
        assertEquals(2, dq.status());
        assertEquals("peft4j: logits: --double-quant needs --quantize nf4|fp4", dq.err().trim());
    }

    @Test
    void mergeIntoA4bitBaseRequantisesOrWritesDense() throws Exception {
        String base = Fixtures.dir(NF4).resolve("base").toString();
        String adapter = Fixtures.dir(NF4).resolve("adapter").toString();
        Path q = tmp.resolve("merged4");
        CliResult r = CliResult.run("merge", "--model", base, "--adapter", adapter, "--output", q.toString());
        assertEquals(0, r.status(), r.err());
        System.out.print(r.out());
        assertTrue(r.out().contains("4-bit, requantised"), r.out());
        try (SafeTensorsFile f = SafeTensorsFile.open(q.resolve("model.safetensors"))) {
            assertEquals(TensorDType.U8, f.info("model.layers.0.self_attn.q_proj.weight").dtype());
        }
        assertTrue(JSON.readTree(q.resolve("config.json").toFile()).has("quantization_config"));
        double merged4 = logitsVs(q.toString(), "merged_logits.json", "merged_logits");
        Path d = tmp.resolve("dense");
        CliResult rd = CliResult.run("merge", "--model", base, "--adapter", adapter, "--dense", "--output", d.toString());
        assertEquals(0, rd.status(), rd.err());
        System.out.print(rd.out());
        try (SafeTensorsFile f = SafeTensorsFile.open(d.resolve("model.safetensors"))) {
            assertEquals(TensorDType.F32, f.info("model.layers.0.self_attn.q_proj.weight").dtype());
            assertFalse(f.names().stream().anyMatch(k -> k.contains("quant")));
        }
        assertFalse(JSON.readTree(d.resolve("config.json").toFile()).has("quantization_config"));
        double dense = logitsVs(d.toString(), "logits.json", "adapter_logits");
        System.out.printf("merge into 4-bit vs HF merge_and_unload: %.3g; merge --dense vs HF 4-bit + adapter: %.3g%n",
                merged4, dense);
        assertTrue(merged4 < 1e-4, "4-bit merge " + merged4);
        assertTrue(dense < 1e-4, "dense merge " + dense);
        CliResult noQ = CliResult.run("merge", "--model", Fixtures.dir("llama_lora").resolve("base").toString(), "--adapter",
                adapter, "--dense", "--output", tmp.resolve("x").toString());
        assertEquals(2, noQ.status());
        assertTrue(noQ.err().contains("has no 4-bit layers"), noQ.err());
    }

    @Test
    void trainQuantizeGivesHfQloraLosses() throws Exception {
        Path parity = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd");
        JsonNode expected = JSON.readTree(Fixtures.root().resolveSibling("bnb").resolve("llama_nf4_dq_sgd/losses.json").toFile());
        Path metrics = tmp.resolve("m.jsonl");
        CliResult r = CliResult.run("train", "--model", parity.resolve("base").toString(), "--quantize", "nf4",
                "--double-quant", "--init-adapter", parity.resolve("adapter").toString(), "--data",
                parity.resolve("data.jsonl").toString(), "--optimizer", "sgd", "--lr", "0.1", "--max-steps", "5",
                "--batch-size", "2", "--no-shuffle", "--clip", "0.6", "--metrics", metrics.toString(), "--output",
                tmp.resolve("out").toString(), "--device", "cpu");
        assertEquals(0, r.status(), r.err());
        List<String> lines = Files.readAllLines(metrics);
        assertEquals(5, lines.size());
        double worst = 0;
        for (int i = 0; i < 5; i++) {
            double loss = JSON.readTree(lines.get(i)).get("loss").asDouble();
            assertEquals(expected.get("losses").get(i).asDouble(), loss, 1e-4, "step " + (i + 1));
            worst = Math.max(worst, Math.abs(expected.get("losses").get(i).asDouble() - loss));
        }
        System.out.printf("train --quantize nf4 --double-quant: 5 SGD steps vs HF QLoRA losses max|diff| = %.2e%n", worst);
        assertTrue(Files.isRegularFile(tmp.resolve("out/adapter_model.safetensors")));
    }

    @Test
    void generateQuantizesOnLoad() throws Exception {
        Path dir = Fixtures.dir("llama_generate");
        Path input = tmp.resolve("in.json");
        Files.writeString(input, "{\"input_ids\": [[47, 83, 38, 53, 76, 116, 24, 121]]}");
        Path q = tmp.resolve("q");
        assertEquals(0, CliResult.run("quantize", "--model", dir.resolve("base").toString(), "--output", q.toString())
                .status());
        CliResult onLoad = CliResult.run("generate", "--model", dir.resolve("base").toString(), "--quantize", "nf4",
                "--input", input.toString(), "--max-new-tokens", "6");
        CliResult packed = CliResult.run("generate", "--model", q.toString(), "--input", input.toString(),
                "--max-new-tokens", "6");
        assertEquals(0, onLoad.status(), onLoad.err());
        assertEquals(0, packed.status(), packed.err());
        assertEquals(packed.out(), onLoad.out(), "quantise-on-load generates what the quantised checkpoint generates");
        assertEquals(6, JSON.readTree(onLoad.out()).get("generated_ids").get(0).size());
    }
}
