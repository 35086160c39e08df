package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.Locale;
import org.junit.jupiter.api.Test;

/**
 * {@code trainableReport()} gives HF PEFT's own numbers ({@code get_nb_trainable_parameters}, recorded by
 * {@code peft-core/src/test/python/trainable_reports.py}) for LoRA, IA3, prompt and prefix adapters,
 * with and without a trained classification head.
 */
class TrainableReportParityTest {
    @Test
    void reportsMatchHf() {
        JsonNode reports = Fixtures.json("", "trainable_reports.json");
        Iterator<String> cases = reports.fieldNames();
        int checked = 0;
        while (cases.hasNext()) {
            String name = cases.next();
            Path dir = Fixtures.dir(name);
            long trainable = reports.get(name).get("trainable").asLong();
            long all = reports.get(name).get("all").asLong();
            try (TransformerModel base = Models.load(dir.resolve("base"))) {
                PeftModel peft = PeftModel.wrap(base);
                peft.loadAdapter(dir.resolve("adapter"), "default", true);
                String expected = String.format(Locale.ROOT, "trainable params: %,d || all params: %,d || trainable%%: %.4f",
                        trainable, all, 100.0 * trainable / all);
                assertEquals(expected, peft.trainableReport(), name);
                checked++;
            }
        }
        assertEquals(10, checked);
    }
}
