package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Exit codes and messages: bad usage or input is status 2 and one line naming the option; a failure is 1. */
class CliErrorsTest {
    @TempDir
    Path tmp;

    private static void badUsage(String expected, String... args) {
        CliResult r = CliResult.run(args);
        assertEquals(2, r.status(), String.join(" ", args) + " -> " + r.err());
        assertEquals("", r.out(), "nothing on stdout");
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("peft4j: " + expected), "expected 'peft4j: " + expected + "...', got " + r.err());
    }

    @Test
    void badValuesAreRefusedBeforeAnyWorkWithOneLineNamingTheOption() {
        String model = Fixtures.dir("llama_lora").resolve("base").toString();
        badUsage("train: --lr 'x' is not a number", "train", "--lr", "x");
        badUsage("train: --lr 'x' is not a number", "train", "--lr=x"); // both spellings
        badUsage("train: --batch-size must be an integer >= 1, got '0'", "train", "--model", model, "--batch-size", "0");
        badUsage("train: --dropout must be a number in [0, 1), got '1'", "train", "--dropout", "1");
        badUsage("train: --format 'csv': expected pretokenized, alpaca, chat, classification or conll", "train", "--format", "csv");
        badUsage("train: --method 'lorax': expected one of ", "train", "--method", "lorax"); // the registered methods follow
        badUsage("train: --model /nonexistent/model: no such directory", "train", "--model", "/nonexistent/model");
        badUsage("train: --data " + model + ": no such file", "train", "--data", model);
        badUsage("generate: --top-p must be a number in (0, 1], got '1.5'", "generate", "--top-p", "1.5");
        badUsage("generate: --stop 'x' is not an integer", "generate", "--stop", "3,x");
        badUsage("spam-job: --steps 'x' is not an integer", "spam-job", "--steps", "lora=x");
        badUsage("spam-job: --steps 'lorra': expected probe, lora, dora, bitfit, prompt, ptuning, pfeiffer, ln-tuning, last-k, sparse,"
                + " learned-mask or full", "spam-job", "--steps", "lorra=3");
        badUsage("spam-job: --methods 'svm': expected probe, lora, dora, bitfit, prompt, ptuning, pfeiffer, ln-tuning, last-k, sparse,"
                + " learned-mask, full or all", "spam-job", "--methods", "lora,svm");
        badUsage("logits: --adapter /nonexistent: no such directory", "logits", "--adapter", "a=/nonexistent");
        badUsage("completion: SHELL 'fish': expected bash or zsh", "completion", "fish");
        badUsage("bench: unknown --shape 'gpt3'", "bench", "--shape", "gpt2-tiny,gpt3");
    }

    @Test
    void unknownOptionsAndCommandsNameTheClosestKnownOne() {
        badUsage("train: unknown option '--lrr'; did you mean --lr?", "train", "--lrr", "1");
        badUsage("generate: unknown option '--max-new-token'; did you mean --max-new-tokens?", "generate", "--max-new-token", "3");
        badUsage("unknown command 'trian'; did you mean train?", "trian");
        badUsage("logits: option --model needs a value", "logits", "--model");
        badUsage("logits: option --input needs a value", "logits", "--input", "--output", "x.json");
        badUsage("merge: missing required options --adapter, --output", "merge", "--model", "/tmp");
        badUsage("prepare-spam: missing required option --output", "prepare-spam");
    }

    @Test
    void ourOwnInputErrorsStayOneLineWithStatus2() throws Exception {
        Path dir = Fixtures.dir("llama_lora");
        String base = dir.resolve("base").toString();
        String adapter = dir.resolve("adapter").toString();
        String input = dir.resolve("input_ids.json").toString();
        String out = tmp.resolve("o.json").toString();
        badUsage("info: --adapter: the name 'default' is given twice", "info", "--model", base, "--adapter", adapter,
                "--adapter", adapter);
        badUsage("logits: --row-adapters: 'b' is not a loaded adapter; expected one of [a] or __base__", "logits",
                "--model", base, "--adapter", "a=" + adapter, "--row-adapters", "a,b", "--input", input, "--output", out);
        badUsage("logits: --row-adapters gives 3 names, " + input + " has 2 rows", "logits", "--model", base, "--adapter",
                "a=" + adapter, "--row-adapters", "a,__base__,a", "--input", input, "--output", out);
        badUsage("logits: --row-adapters needs the adapters unmerged", "logits", "--model", base, "--adapter", adapter,
                "--merge", "--row-adapters", "default,default", "--input", input, "--output", out);
        badUsage("logits: --merge needs --adapter", "logits", "--model", base, "--merge", "--input", input, "--output", out);
        assertFalse(Files.exists(Path.of(out)));
    }

    /** A BERT input with token type 5 where the model has 2: libtorch's embedding lookup rejects it. */
    private String[] libtorchRejects() throws Exception {
        Path bad = tmp.resolve("types.json");
        Files.writeString(bad, "{\"input_ids\": [[1, 2, 3]], \"token_type_ids\": [[0, 5, 0]]}");
        return new String[] {"logits", "--model", Fixtures.dir("bert_lora").resolve("base").toString(), "--input",
            bad.toString(), "--output", tmp.resolve("x.json").toString()};
    }

    @Test
    void anInternalErrorIsStatus1AndOneLineWithoutVerbose() throws Exception {
        String[] args = libtorchRejects();
        CliResult r = CliResult.run(args);
        assertEquals(1, r.status(), r.err());
        assertEquals(1, r.err().strip().lines().count(), r.err());
        assertTrue(r.err().startsWith("peft4j: internal error in logits: EngineException: index out of range in self."),
                r.err());
        assertTrue(r.err().contains("libtorch rejected an operation") && r.err().contains("rerun with --verbose"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace");

        List<String> verbose = new ArrayList<>(List.of(args));
        verbose.add("--verbose");
        CliResult v = CliResult.run(verbose.toArray(String[]::new));
        assertEquals(1, v.status());
        assertTrue(v.err().lines().count() > 5 && v.err().contains("\tat ai.djl.pytorch.jni.PyTorchLibrary"), v.err());
        verbose.add(0, verbose.remove(verbose.size() - 1)); // before the command works too
        assertTrue(CliResult.run(verbose.toArray(String[]::new)).err().contains("\tat "));
        assertFalse(Files.exists(tmp.resolve("x.json")));
        CliResult usage = CliResult.run("train", "--lr", "x", "--verbose");
        assertEquals(2, usage.status());
        assertTrue(usage.err().startsWith("peft4j: train: --lr 'x' is not a number\n")
                && usage.err().contains("\tat picocli."), "--verbose shows the trace of a usage error too: " + usage.err());
    }

    @Test
    void severalAdaptersAreActiveTogetherAsWithTheJavaApi() throws Exception {
        Path dir = Fixtures.dir("llama_lora");
        Path other = Fixtures.dir("llama_generate").resolve("adapter"); // another LoRA for the same base shapes
        Path out = tmp.resolve("two.json");
        CliResult r = CliResult.run("logits", "--model", dir.resolve("base").toString(), "--adapter",
                "a=" + dir.resolve("adapter"), "--adapter", "b=" + other, "--input", dir.resolve("input_ids.json").toString(),
                "--output", out.toString());
        assertEquals(0, r.status(), r.err());
        JsonNode json = new ObjectMapper().readTree(out.toFile());
        List<Float> flat = new ArrayList<>();
        json.get("logits").forEach(b -> b.forEach(s -> s.forEach(v -> flat.add(v.floatValue()))));
        float[] got = new float[flat.size()];
        for (int i = 0; i < got.length; i++) {
            got[i] = flat.get(i);
        }
        try (TransformerModel m = Models.load(dir.resolve("base"));
                NDManager nd = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(m);
            peft.loadAdapter(dir.resolve("adapter"), "a", false);
            peft.loadAdapter(other, "b", false);
            peft.setActive("a", "b");
            NDArray ids = Fixtures.ids(nd, "llama_lora", "input_ids");
            NDArray want = peft.forward(ModelInput.of(ids, null)).logits();
            peft.setActive("a");
            NDArray onlyA = peft.forward(ModelInput.of(ids, null)).logits();
            NDArray cli = nd.create(got, new Shape(want.getShape().getShape()));
            double diff = Fixtures.maxAbsDiff(cli, want);
            double fromA = Fixtures.maxAbsDiff(want, onlyA);
            System.out.printf("two adapters: CLI vs API max|diff| = %.3g; a+b vs a alone %.3g%n", diff, fromA);
            assertTrue(diff < 1e-5, "max |diff| " + diff);
            assertTrue(fromA > 1e-3, "b changes the logits: " + fromA);
        }
        CliResult rows = CliResult.run("logits", "--model", dir.resolve("base").toString(), "--adapter",
                "a=" + dir.resolve("adapter"), "--row-adapters", "a,__base__", "--input", dir.resolve("input_ids.json").toString(),
                "--output", tmp.resolve("rows.json").toString());
        assertEquals(0, rows.status(), rows.err()); // parsed and passed on; the numbers are the core's business
    }
}
