package io.github.peft4j.lora.combine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Weighted combinations at HF PEFT 0.21 parity (fixtures of {@code make_combine_fixtures.py}): for every combo of
 * {@code combos.json} (the deterministic types with 2 and 3 sources, negative weights, mixed ranks, svd rank and clamp,
 * a single source), the combined adapter's logits within 1e-4 of HF's, and the saved file's keys and shapes and its
 * config's r, lora_alpha and target_modules as HF's. A missing fixture fails.
 */
class CombineParityTest {
    static final double TOL = 1e-4;
    private static final ObjectMapper JSON = new ObjectMapper();
    @TempDir
    Path tmp;

    /** @return the fixture directory (fails when the generator was not run) */
    static Path fixture(String name) {
        Path dir = Fixtures.dir(name);
        assertTrue(Files.isRegularFile(dir.resolve("combos.json")),
                "fixture " + name + " missing: run peft-core/src/test/python/make_combine_fixtures.py");
        return dir;
    }

    /** Loads the case's base and its source adapters (named as in the fixture). */
    static PeftModel withSources(TransformerModel base, Path dir) throws IOException {
        PeftModel peft = PeftModel.wrap(base);
        try (var s = Files.list(dir.resolve("sources"))) {
            for (Path p : s.sorted().toList()) {
                peft.loadAdapter(p, p.getFileName().toString(), false);
            }
        }
        return peft;
    }

    /** The combination a combos.json entry describes. */
    static Combination spec(JsonNode c) {
        Combination spec = Combination.of(CombinationType.parse(c.get("combination_type").asText()))
                .majoritySign(Combination.MajoritySign.parse(c.get("majority_sign_method").asText()));
        if (!c.get("svd_rank").isNull()) {
            spec = spec.svdRank(c.get("svd_rank").asInt());
        }
        if (!c.get("svd_clamp").isNull()) {
            spec = spec.svdClamp(c.get("svd_clamp").asDouble());
        }
        if (!c.get("density").isNull()) {
            spec = spec.density(c.get("density").asDouble());
        }
        return spec;
    }

    static List<String> strings(JsonNode n) {
        List<String> out = new ArrayList<>();
        n.forEach(x -> out.add(x.asText()));
        return out;
    }

    static double[] doubles(JsonNode n) {
        double[] out = new double[n.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = n.get(i).asDouble();
        }
        return out;
    }

    /** Key to shape of a safetensors file. */
    static Map<String, List<Long>> keysAndShapes(Path file) {
        Map<String, List<Long>> out = new TreeMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(file)) {
            for (String k : f.names()) {
                List<Long> shape = new ArrayList<>();
                for (long d : f.info(k).shape()) {
                    shape.add(d);
                }
                out.put(k, shape);
            }
        }
        return out;
    }

    static Map<String, List<Long>> hfShapes(JsonNode saved) {
        Map<String, List<Long>> out = new TreeMap<>();
        saved.fields().forEachRemaining(e -> {
            List<Long> shape = new ArrayList<>();
            e.getValue().forEach(d -> shape.add(d.asLong()));
            out.put(e.getKey(), shape);
        });
        return out;
    }

    /** Asserts the saved adapter's keys, shapes and config against a combos.json entry. */
    static void assertSavedAsHf(Path dir, JsonNode c, String what) throws IOException {
        assertEquals(hfShapes(c.get("saved")), keysAndShapes(dir.resolve("adapter_model.safetensors")), what + " saved keys/shapes");
        JsonNode cfg = JSON.readTree(dir.resolve("adapter_config.json").toFile());
        JsonNode hf = c.get("config");
        assertEquals(hf.get("r").asInt(), cfg.get("r").asInt(), what + " r");
        assertEquals(hf.get("lora_alpha").asDouble(), cfg.get("lora_alpha").asDouble(), what + " lora_alpha");
        assertEquals(new TreeSet<>(strings(hf.get("target_modules"))), new TreeSet<>(strings(cfg.get("target_modules"))),
                what + " target_modules");
        assertEquals(hf.get("use_rslora"), cfg.get("use_rslora"), what + " use_rslora");
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama_combine", "gpt2_combine"})
    void everyDeterministicCombinationMatchesHf(String name) throws IOException {
        Path dir = fixture(name);
        JsonNode combos = Fixtures.json(name, "combos.json");
        Path baseDir = Fixtures.dir(combos.get("base_case").asText()).resolve("base");
        StringBuilder report = new StringBuilder();
        try (TransformerModel base = Models.load(baseDir); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = withSources(base, dir);
            ModelInput in = ModelInput.of(Fixtures.ids(m, name, "input_ids"), Fixtures.ids(m, name, "attention_mask"));
            double worst = 0;
            for (JsonNode c : combos.get("combos")) {
                String n = c.get("name").asText();
                peft.addWeightedAdapter(n, strings(c.get("adapters")), doubles(c.get("weights")), spec(c));
                peft.setActive(n);
                if (c.get("svd_clamp").isNull()) { // clamping depends on the SVD's signs: clampMatchesHfGivenItsSigns
                    NDArray ours = peft.forward(in).logits();
                    NDArray hf = hfLogits(m, c);
                    double diff = Fixtures.maxAbsDiff(ours, hf);
                    report.append(String.format(java.util.Locale.ROOT, "%n  %-28s max|diff| %.3e", n, diff));
                    worst = Math.max(worst, diff);
                    assertTrue(diff < TOL, name + "/" + n + ": logits max|diff| " + diff);
                }
                Path saved = tmp.resolve(name).resolve(n);
                peft.saveAdapter(n, saved);
                assertSavedAsHf(saved, c, name + "/" + n);
                peft.deleteAdapter(n);
            }
            System.out.println(name + ": " + combos.get("combos").size() + " combinations, worst logits max|diff| "
                    + worst + report);
        }
    }

    static NDArray hfLogits(NDManager m, JsonNode c) {
        List<Float> flat = new ArrayList<>();
        flatten(c.get("logits"), flat);
        float[] data = new float[flat.size()];
        for (int i = 0; i < data.length; i++) {
            data[i] = flat.get(i);
        }
        long[] shape = new long[c.get("logits_shape").size()];
        for (int i = 0; i < shape.length; i++) {
            shape[i] = c.get("logits_shape").get(i).asLong();
        }
        return m.create(data, new ai.djl.ndarray.types.Shape(shape));
    }

    private static void flatten(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(x -> flatten(x, out));
        } else {
            out.add(n.floatValue());
        }
    }

    /** The exact (sign-free) types give HF's very tensors, not only its logits. */
    @Test
    void linearAndCatTensorsAreHfs() throws IOException {
        Path dir = fixture("llama_combine");
        JsonNode combos = Fixtures.json("llama_combine", "combos.json");
        try (TransformerModel base = Models.load(Fixtures.dir("llama_lora").resolve("base"))) {
            PeftModel peft = withSources(base, dir);
            for (String n : List.of("linear_3", "cat_3")) {
                JsonNode c = null;
                for (JsonNode x : combos.get("combos")) {
                    if (x.get("name").asText().equals(n)) {
                        c = x;
                    }
                }
                peft.addWeightedAdapter(n, strings(c.get("adapters")), doubles(c.get("weights")), spec(c));
                Path saved = tmp.resolve(n);
                peft.saveAdapter(n, saved);
                double worst = maxTensorDiff(saved.resolve("adapter_model.safetensors"),
                        dir.resolve("combined").resolve(n).resolve("adapter_model.safetensors"));
                System.out.println("llama_combine/" + n + ": saved tensors max|diff| vs HF's file " + worst);
                assertTrue(worst < 1e-6, n + ": tensors max|diff| " + worst);
            }
        }
    }

    /**
     * {@code svd_clamp} clamps the factors to a quantile of their values, which depends on the signs of the singular
     * vectors: LAPACK (HF) and EJML (peft4j) pick them differently, and either is a valid SVD (HF on CUDA differs from
     * HF on CPU too). Given HF's signs (read off HF's saved factors), peft4j's clamp gives HF's logits.
     */
    @Test
    void clampMatchesHfGivenItsSigns() throws IOException {
        Path dir = fixture("llama_combine");
        JsonNode c = null;
        for (JsonNode x : Fixtures.json("llama_combine", "combos.json").get("combos")) {
            if (x.get("name").asText().equals("svd_rank3_clamp")) {
                c = x;
            }
        }
        Combination clamped = spec(c);
        double q = clamped.svdClamp();
        Combination unclamped = Combination.of(CombinationType.SVD).svdRank(clamped.svdRank());
        try (TransformerModel base = Models.load(Fixtures.dir("llama_lora").resolve("base"));
                NDManager m = NDManager.newBaseManager();
                SafeTensorsFile hfFile = SafeTensorsFile.open(dir.resolve("combined/svd_rank3_clamp/adapter_model.safetensors"))) {
            PeftModel peft = withSources(base, dir);
            String n = "clamp";
            peft.addWeightedAdapter(n, strings(c.get("adapters")), doubles(c.get("weights")), unclamped);
            Map<String, NDArray> ours = peft.stateDict(n);
            Map<String, NDArray> fixed = new TreeMap<>();
            int flips = 0;
            for (String key : ours.keySet()) {
                if (!key.endsWith("lora_A.weight")) {
                    continue;
                }
                String keyB = key.replace("lora_A.weight", "lora_B.weight");
                float[] a = ours.get(key).toFloatArray();
                float[] b = ours.get(keyB).toFloatArray();
                float[] hfA = hfFile.load(key, m).toFloatArray();
                long[] sa = ours.get(key).getShape().getShape();
                long[] sb = ours.get(keyB).getShape().getShape();
                int k = (int) sa[0];
                int in = (int) sa[1];
                int out = (int) sb[0];
                double[] da = new double[a.length];
                double[] db = new double[b.length];
                for (int j = 0; j < k; j++) {
                    double dot = 0;
                    for (int i = 0; i < in; i++) {
                        dot += a[j * in + i] * hfA[j * in + i];
                    }
                    double sign = dot < 0 ? -1 : 1;
                    flips += dot < 0 ? 1 : 0;
                    for (int i = 0; i < in; i++) {
                        da[j * in + i] = sign * a[j * in + i];
                    }
                    for (int o = 0; o < out; o++) {
                        db[o * k + j] = sign * b[o * k + j];
                    }
                }
                TruncatedSvd.Factors f = TruncatedSvd.clamp(new TruncatedSvd.Factors(db, da, out, in, k), q);
                fixed.put(key, m.create(toFloats(f.a()), ours.get(key).getShape()));
                fixed.put(keyB, m.create(toFloats(f.b()), ours.get(keyB).getShape()));
            }
            peft.loadStateDict(n, fixed, "sign-aligned clamp");
            peft.setActive(n);
            ModelInput in = ModelInput.of(Fixtures.ids(m, "llama_combine", "input_ids"),
                    Fixtures.ids(m, "llama_combine", "attention_mask"));
            double diff = Fixtures.maxAbsDiff(peft.forward(in).logits(), hfLogits(m, c));
            System.out.println("llama_combine/svd_rank3_clamp (HF's signs, " + flips + " flipped): logits max|diff| " + diff);
            assertTrue(diff < TOL, "clamp logits max|diff| " + diff);
        }
    }

    private static float[] toFloats(double[] d) {
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    /** Max |a − b| over the tensors of two safetensors files with the same keys. */
    static double maxTensorDiff(Path ours, Path hf) {
        double worst = 0;
        try (NDManager m = NDManager.newBaseManager(); SafeTensorsFile a = SafeTensorsFile.open(ours);
                SafeTensorsFile b = SafeTensorsFile.open(hf)) {
            assertEquals(new TreeSet<>(b.names()), new TreeSet<>(a.names()), "keys of " + ours);
            for (String k : b.names()) {
                worst = Math.max(worst, Fixtures.maxAbsDiff(a.load(k, m), b.load(k, m)));
            }
        }
        return worst;
    }
}
