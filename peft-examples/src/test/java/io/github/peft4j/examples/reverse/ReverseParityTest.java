package io.github.peft4j.examples.reverse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.TensorInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Reverse parity without Python: each case's adapter is re-written by peft4j ({@link ReverseParity#write}, seeded)
 * and checked against what HF PEFT read and produced for the same files when {@code reverse_parity.py} ran
 * ({@code fixtures/hf-peft-reverse/<case>.json}): the same tensor keys, dtypes and shapes (which also equal HF's
 * own re-save), the same config fields, and logits within 1e-4 of HF's (in memory, reloaded through
 * {@code AutoPeftModel}, and for the merged checkpoint). A missing fixture fails.
 */
class ReverseParityTest {
    /** Config values that are paths: only whether they are set must match. */
    private static final Set<String> PATHS = Set.of("tokenizer_name_or_path", "base_model_name_or_path");

    @TempDir
    static Path tmp;

    static Stream<String> cases() {
        return ReverseParity.CASES.stream().map(ReverseParity.Case::name);
    }

    private static Path fixtures() {
        return ReverseParity.fixturesRoot().resolve("hf-peft-reverse");
    }

    @Test
    void everyFixtureIsACaseAndEveryCaseHasAFixture() throws IOException {
        Set<String> files;
        try (Stream<Path> s = Files.list(fixtures())) {
            files = s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".json"))
                    .map(n -> n.substring(0, n.length() - 5)).collect(Collectors.toCollection(TreeSet::new));
        }
        assertEquals(new TreeSet<>(cases().toList()), files, "fixtures/hf-peft-reverse vs ReverseParity.CASES");
    }

    @ParameterizedTest
    @MethodSource("cases")
    void peft4jFilesStayWhatHfPeftLoaded(String name) throws IOException {
        Path file = fixtures().resolve(name + ".json");
        assertTrue(Files.isRegularFile(file), file + " is missing: run scripts/reverse-parity.sh");
        JsonNode fx = ReverseParity.readJson(file);
        assertEquals(List.of(), StreamSupport.stream(fx.get("problems").spliterator(), false).toList(), name);
        ReverseParity.Case c = ReverseParity.find(name);
        ReverseParity.Written w = ReverseParity.write(c, tmp.resolve(name));

        Map<String, String> ours = header(w.adapter().resolve("adapter_model.safetensors"));
        assertEquals(header(fx.get("adapter_tensors")), ours, name + ": keys, dtypes and shapes HF PEFT loaded");
        assertEquals(header(fx.get("hf_saved_tensors")), ours, name + ": keys, dtypes and shapes HF PEFT saves");

        JsonNode config = ReverseParity.readJson(w.adapter().resolve("adapter_config.json"));
        JsonNode loaded = fx.get("adapter_config");
        assertEquals(names(loaded), names(config), name + ": adapter_config.json keys");
        for (String k : names(config)) {
            if (PATHS.contains(k)) {
                assertEquals(loaded.get(k).isNull(), config.get(k).isNull(), name + ": " + k + " set or not");
            } else {
                assertEquals(loaded.get(k), config.get(k), name + ": adapter_config.json '" + k + "'");
            }
            assertTrue(fx.get("hf_saved_config").has(k), name + ": HF PEFT does not know '" + k + "'");
        }
        assertEquals(fx.get("adapter_config").get("peft_type"), fx.get("hf_saved_config").get("peft_type"));

        ReverseParity.Logits hf = logits(fx, "hf_logits");
        double d = w.logits().maxAbsDiff(hf);
        double r = w.reloaded().maxAbsDiff(hf);
        System.out.printf("parity reverse %s adapter max|diff| = %.3g (HF PEFT: %.3g), reloaded = %.3g%n", name, d,
                fx.get("max_diff").asDouble(), r);
        assertTrue(d < 1e-4, name + ": peft4j vs HF PEFT logits " + d);
        assertTrue(r < 1e-4, name + ": reloaded by AutoPeftModel vs HF PEFT logits " + r);
        assertTrue(fx.get("adapter_effect").asDouble() > 0.05, name + ": the adapter must change the output");
        // HF's AutoPeftModelFor<task> loaded the adapter directory alone (base from base_model_name_or_path)
        assertTrue(fx.get("max_diff_auto_peft_model").asDouble() < 1e-4, name + ": AutoPeftModel in HF");
        assertFalse(config.get("base_model_name_or_path").isNull(), name + ": base_model_name_or_path");
        if (c.merge()) {
            assertNotNull(w.mergedLogits(), name);
            double m = w.mergedLogits().maxAbsDiff(logits(fx, "hf_merged_logits"));
            System.out.printf("parity reverse %s merged max|diff| = %.3g%n", name, m);
            assertTrue(m < 1e-4, name + ": merged checkpoint in peft4j vs transformers " + m);
            JsonNode merged = ReverseParity.readJson(w.merged().resolve("config.json"));
            assertEquals(fx.get("hf_merged_class").asText(), merged.get("architectures").get(0).asText(),
                    name + ": merged config.json names the class transformers loaded");
        } else {
            assertFalse(fx.has("hf_merged_logits"), name);
        }
    }

    static Stream<String> ownFormat() {
        return ReverseParity.OWN_FORMAT.stream().map(ReverseParity.Case::name);
    }

    /** BitFit has no reference library (HF PEFT has no BitFit): peft4j's own round trip, saved, reloaded, merged. */
    @ParameterizedTest
    @MethodSource("ownFormat")
    void ownFormatRoundTrips(String name) {
        ReverseParity.Case c = ReverseParity.find(name);
        ReverseParity.Written w = ReverseParity.write(c, tmp.resolve(name));
        double r = w.logits().maxAbsDiff(w.reloaded());
        double m = w.mergedLogits().maxAbsDiff(w.logits());
        System.out.printf("round trip %s (no reference library) reloaded max|diff| = %.3g, merged = %.3g%n", name, r, m);
        assertEquals(0.0, r, name + ": reloaded through AutoPeftModel");
        assertTrue(m < 1e-5, name + ": merged checkpoint " + m);
        assertFalse(Files.exists(fixtures().resolve(name + ".json")), name + " has no reference fixture");
        Map<String, String> keys = header(w.adapter().resolve("adapter_model.safetensors"));
        assertTrue(keys.keySet().stream().allMatch(k -> k.endsWith(".bias") || k.contains("classifier")
                || k.contains("pooler")), keys.toString());
        assertTrue(keys.size() > 4, keys.toString());
    }

    private static Map<String, String> header(Path file) {
        Map<String, String> out = new TreeMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(file)) {
            for (String k : f.names()) {
                TensorInfo i = f.info(k);
                out.put(k, i.dtype().name() + java.util.Arrays.toString(i.shape()));
            }
        }
        return out;
    }

    private static Map<String, String> header(JsonNode n) {
        Map<String, String> out = new TreeMap<>();
        n.fields().forEachRemaining(e -> {
            long[] shape = StreamSupport.stream(e.getValue().get("shape").spliterator(), false)
                    .mapToLong(JsonNode::asLong).toArray();
            out.put(e.getKey(), e.getValue().get("dtype").asText() + java.util.Arrays.toString(shape));
        });
        return out;
    }

    private static List<String> names(JsonNode n) {
        List<String> out = new java.util.ArrayList<>();
        for (Iterator<String> it = ((ObjectNode) n).fieldNames(); it.hasNext();) {
            out.add(it.next());
        }
        return out.stream().sorted().toList();
    }

    private static ReverseParity.Logits logits(JsonNode fx, String key) {
        long[] shape = StreamSupport.stream(fx.get(key + "_shape").spliterator(), false).mapToLong(JsonNode::asLong)
                .toArray();
        JsonNode v = fx.get(key);
        float[] values = new float[v.size()];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) v.get(i).asDouble();
        }
        return new ReverseParity.Logits(shape, values);
    }
}
