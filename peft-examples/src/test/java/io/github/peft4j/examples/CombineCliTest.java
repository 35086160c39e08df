package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.PretokenizedData;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import io.github.peft4j.train.PeftTrainer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code peft4j combine} reproduces HF PEFT's combined adapters (fixture {@code llama_combine}: the tensors of HF's
 * saved linear and cat combinations, the logits of a ties_svd one), and {@code peft4j lorahub} writes an ordinary
 * adapter with the loss it prints, reproducibly.
 */
class CombineCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path BASE = Fixtures.dir("llama_lora").resolve("base");
    private static final Path F = Fixtures.dir("llama_combine");

    private static JsonNode combo(String name) {
        for (JsonNode c : Fixtures.json("llama_combine", "combos.json").get("combos")) {
            if (c.get("name").asText().equals(name)) {
                return c;
            }
        }
        throw new AssertionError("llama_combine has no combo " + name + ": run make_combine_fixtures.py");
    }

    private static List<String> args(String name, Path out) {
        JsonNode c = combo(name);
        List<String> a = new ArrayList<>(List.of("combine", "--model", BASE.toString()));
        List<String> w = new ArrayList<>();
        for (int i = 0; i < c.get("adapters").size(); i++) {
            String n = c.get("adapters").get(i).asText();
            a.addAll(List.of("--adapter", n + "=" + F.resolve("sources").resolve(n)));
            w.add(c.get("weights").get(i).asText());
        }
        a.addAll(List.of("--weights", String.join(",", w), "--type", c.get("combination_type").asText()));
        if (!c.get("density").isNull()) {
            a.addAll(List.of("--density", c.get("density").asText()));
        }
        if (!c.get("svd_rank").isNull()) {
            a.addAll(List.of("--svd-rank", c.get("svd_rank").asText()));
        }
        a.addAll(List.of("--majority-sign", c.get("majority_sign_method").asText(), "--output", out.toString()));
        return a;
    }

    @Test
    void combineWritesHfsCombinedAdapters(@TempDir Path dir) throws Exception {
        for (String n : List.of("linear_3", "cat_3")) {
            Path out = dir.resolve(n);
            CliResult r = CliResult.run(args(n, out).toArray(String[]::new));
            assertEquals(0, r.status(), r.err());
            assertTrue(r.out().startsWith("combined " + combo(n).get("combination_type").asText()), r.out());
            double worst = 0;
            Path hf = F.resolve("combined").resolve(n);
            try (NDManager m = NDManager.newBaseManager();
                    SafeTensorsFile ours = SafeTensorsFile.open(out.resolve("adapter_model.safetensors"));
                    SafeTensorsFile theirs = SafeTensorsFile.open(hf.resolve("adapter_model.safetensors"))) {
                assertEquals(new TreeSet<>(theirs.names()), new TreeSet<>(ours.names()), n + " keys");
                for (String k : theirs.names()) {
                    worst = Math.max(worst, Fixtures.maxAbsDiff(ours.load(k, m), theirs.load(k, m)));
                }
            }
            System.out.printf("peft4j combine %s vs HF's saved adapter: tensors max|diff| %.2e%n", n, worst);
            assertTrue(worst < 1e-6, n + ": " + worst);
            Fixtures.assertConfigKeysAsHf(sortedTargets(JSON.readTree(hf.resolve("adapter_config.json").toFile())),
                    sortedTargets(JSON.readTree(out.resolve("adapter_config.json").toFile())), n);
        }
        // a pruned svd type: HF's logits from the saved directory
        Path out = dir.resolve("ties_svd_3");
        CliResult r = CliResult.run(args("ties_svd_3", out).toArray(String[]::new));
        assertEquals(0, r.status(), r.err());
        try (TransformerModel base = Models.load(BASE); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(base);
            peft.loadAdapter(out, "x", false);
            double diff = Fixtures.maxAbsDiff(peft.forward(ModelInput.of(Fixtures.ids(m, "llama_combine", "input_ids"),
                    Fixtures.ids(m, "llama_combine", "attention_mask"))).logits(), logits(m, combo("ties_svd_3")));
            System.out.printf("peft4j combine ties_svd_3 loaded back: logits max|diff| vs HF %.2e%n", diff);
            assertTrue(diff < 1e-4, "ties_svd_3: " + diff);
        }
    }

    /** HF saves target_modules from a set (any order); compare them sorted. */
    private static JsonNode sortedTargets(JsonNode cfg) {
        com.fasterxml.jackson.databind.node.ObjectNode o = cfg.deepCopy();
        List<String> t = new ArrayList<>();
        cfg.get("target_modules").forEach(x -> t.add(x.asText()));
        java.util.Collections.sort(t);
        com.fasterxml.jackson.databind.node.ArrayNode a = o.putArray("target_modules");
        t.forEach(a::add);
        return o;
    }

    private static ai.djl.ndarray.NDArray logits(NDManager m, JsonNode c) {
        List<Float> flat = new ArrayList<>();
        flatten(c.get("logits"), flat);
        float[] d = new float[flat.size()];
        for (int i = 0; i < d.length; i++) {
            d[i] = flat.get(i);
        }
        long[] shape = new long[c.get("logits_shape").size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = c.get("logits_shape").get(i).asLong();
        }
        return m.create(d, new ai.djl.ndarray.types.Shape(shape));
    }

    private static void flatten(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(x -> flatten(x, out));
        } else {
            out.add(n.floatValue());
        }
    }

    @Test
    void combineErrorsNameTheProblem(@TempDir Path dir) {
        CliResult r = CliResult.run("combine", "--model", BASE.toString(), "--adapter", "a=" + F.resolve("sources/a"),
                "--adapter", "d=" + F.resolve("sources/d"), "--weights", "1,-0.7", "--type", "linear", "--output",
                dir.resolve("x").toString());
        assertEquals(1, r.status() == 0 ? 0 : 1, r.out());
        assertTrue(r.err().contains("same r") && r.err().contains("[4, 2]"), r.err());
        CliResult w = CliResult.run("combine", "--model", BASE.toString(), "--adapter", "a=" + F.resolve("sources/a"),
                "--adapter", "b=" + F.resolve("sources/b"), "--weights", "1", "--type", "svd", "--output", dir.resolve("y").toString());
        assertTrue(w.status() != 0 && w.err().contains("expected one per adapter"), w.err());
        CliResult t = CliResult.run("combine", "--model", BASE.toString(), "--adapter", "a=" + F.resolve("sources/a"),
                "--weights", "1", "--type", "avg", "--output", dir.resolve("z").toString());
        assertTrue(t.status() != 0 && t.err().contains("dare_ties_svd"), t.err());
        assertTrue(!Files.exists(dir.resolve("x")) && !Files.exists(dir.resolve("y")));
    }

    @Test
    void lorahubWritesAnOrdinaryAdapterWithTheLossItPrints(@TempDir Path dir) throws Exception {
        Path data = Fixtures.root().resolveSibling("train-parity").resolve("llama_lora_sgd/data.jsonl");
        CliResult t = CliResult.run("train", "--model", BASE.toString(), "--data", data.toString(), "--method", "lora",
                "--r", "4", "--alpha", "8", "--target-modules", "q_proj,v_proj", "--lr", "0.01", "--max-steps", "20",
                "--batch-size", "3", "--log-every", "0", "--device", "cpu", "--output", dir.resolve("a").toString());
        assertEquals(0, t.status(), t.err());
        try (TransformerModel base = Models.load(BASE)) { // a second plug-in: random, same architecture
            PeftModel p = PeftModel.wrap(base);
            LoraConfig c = new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false);
            c.targetModules("q_proj", "v_proj");
            p.addAdapter("b", c);
            p.saveAdapter("b", dir.resolve("b"));
        }
        String[] cmd = {"lorahub", "--model", BASE.toString(), "--adapter", "a=" + dir.resolve("a"), "--adapter",
            "b=" + dir.resolve("b"), "--data", data.toString(), "--steps", "15", "--seed", "1", "--output", dir.resolve("hub").toString()};
        CliResult r = CliResult.run(cmd);
        assertEquals(0, r.status(), r.err());
        System.out.print("peft4j lorahub: " + r.out());
        Matcher m = Pattern.compile("LoRAHub: 15 evaluations; weights a=(\\S+), b=(\\S+); few-shot loss (\\S+) ").matcher(r.out());
        assertTrue(m.find(), r.out());
        double printed = Double.parseDouble(m.group(3));
        CliResult again = CliResult.run(cmd);
        assertEquals(r.out(), again.out(), "same seed, same weights and loss");
        try (TransformerModel base = Models.load(BASE)) {
            PeftModel p = PeftModel.wrap(base);
            p.loadAdapter(dir.resolve("hub"), "hub", true);
            assertEquals("LORA", p.adapter("hub").config().peftType());
            List<Example> ex = PretokenizedData.forModel(base, 0, BadLinePolicy.STOP).read(data);
            try (PeftTrainer e = PeftTrainer.builder().setModel(p).setTrainData(ex).build()) {
                double loss = e.evaluate(ex).get("loss");
                System.out.printf("peft4j lorahub: the saved adapter's loss %.6f (printed %.4f)%n", loss, printed);
                assertEquals(printed, loss, 6e-5);
            }
        }
    }
}
