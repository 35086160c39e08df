package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Accuracy, macro F1 and entity-level F1 on hand-computed cases; the metrics log and chart. */
class MetricsTest {

    @Test
    void accuracyAndMacroF1() {
        int[] gold = {0, 0, 1, 1, 2, 2};
        int[] pred = {0, 1, 1, 1, 0, 2};
        assertEquals(4.0 / 6, Metrics.accuracy(gold, pred), 1e-12);
        // class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
        assertEquals((0.5 + 0.8 + 2.0 / 3) / 3, Metrics.macroF1(gold, pred), 1e-12);
        // a class only predicted (3) counts with F1 0, as scikit-learn does
        assertEquals((1.0 + 0.0 + 0.0) / 3, Metrics.macroF1(new int[] {0, 1}, new int[] {0, 3}), 1e-12);
    }

    @Test
    void entityF1CountsExactSpans() {
        List<List<String>> gold = List.of(
                List.of("B-PER", "I-PER", "O", "B-LOC", "O"),
                List.of("B-ORG", "I-ORG", "I-ORG", "O", "B-PER"));
        List<List<String>> pred = List.of(
                List.of("B-PER", "I-PER", "O", "B-ORG", "O"), // PER right, LOC typed wrong
                List.of("B-ORG", "I-ORG", "O", "O", "I-PER")); // ORG too short; I-PER starts a PER span: right
        // gold spans 4, predicted 4, correct 2 -> P = R = 0.5, F1 0.5
        assertEquals(0.5, Metrics.entityF1(gold, pred), 1e-12);
        assertEquals(List.of(new Metrics.Span(0, "PER", 0, 1), new Metrics.Span(0, "LOC", 3, 3)), Metrics.spans(0, gold.get(0)));
        // I- of another type breaks a span; B- right after a span starts a new one
        assertEquals(List.of(new Metrics.Span(0, "PER", 0, 0), new Metrics.Span(0, "LOC", 1, 1), new Metrics.Span(0, "LOC", 2, 3)),
                Metrics.spans(0, List.of("B-PER", "I-LOC", "B-LOC", "I-LOC")));
        assertEquals(0.0, Metrics.entityF1(List.of(List.of("O")), List.of(List.of("O"))), 0);
        // 3 gold, 2 predicted, 2 right: P 1, R 2/3, F1 0.8
        assertEquals(0.8, Metrics.entityF1(List.of(List.of("B-A", "O", "B-B", "B-C")), List.of(List.of("B-A", "O", "B-B", "O"))), 1e-12);
    }

    @Test
    void metricsLogWritesJsonLinesTruncatesOnResumeAndDrawsAPng(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("m.jsonl");
        MetricsLog log = new MetricsLog(file);
        for (int s = 1; s <= 4; s++) {
            log.step(s, 5.0 - s, 0.1, 100, s == 2 ? Map.of("loss", 3.5) : null);
        }
        List<String> lines = Files.readAllLines(file);
        assertEquals(4, lines.size());
        ObjectMapper json = new ObjectMapper();
        assertEquals(3.5, json.readTree(lines.get(1)).get("eval_loss").asDouble(), 0);
        assertEquals(2, json.readTree(lines.get(1)).get("step").asInt());
        MetricsLog resumed = new MetricsLog(file);
        resumed.truncateAfter(2);
        assertEquals(List.of(4.0, 3.0), resumed.losses());
        assertEquals(2, Files.readAllLines(file).size());
        resumed.writeChart(dir.resolve("curves.png"));
        byte[] png = Files.readAllBytes(dir.resolve("curves.png"));
        assertTrue(png.length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', "PNG of " + png.length + " bytes");
    }

    @Test
    void comparisonChartSmoothingIsADebiasedMovingAverage() {
        double[] s = MetricsLog.smoothed(new double[] {2, 0, 1});
        assertEquals(2.0, s[0], 1e-12); // debiased: the first value itself
        assertEquals((0.9 * 0.1 * 2 + 0.1 * 0) / (0.9 * 0.1 + 0.1), s[1], 1e-12);
        double avg = 0.9 * (0.9 * 0.1 * 2 + 0.1 * 0) + 0.1 * 1;
        assertEquals(avg / (1 - 0.9 * 0.9 * 0.9), s[2], 1e-12);
    }
}
