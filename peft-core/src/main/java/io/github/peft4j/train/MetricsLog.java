package io.github.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;

/**
 * Training metrics as JSON lines (one object per optimizer step: {@code step}, {@code loss}, {@code lr},
 * {@code tokens_per_s}, plus {@code eval_*} keys on evaluation steps) and a PNG chart of the training loss
 * and the evaluation metrics except perplexity, whose scale would flatten the rest ({@code curves.png}, drawn with XChart, rewritten atomically).
 */
public final class MetricsLog {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path file;
    private final List<double[]> train = new ArrayList<>(); // step, loss
    private final Map<String, List<double[]>> eval = new LinkedHashMap<>(); // metric -> (step, value)

    /**
     * @param file the JSON-lines file to append to, or null to keep the metrics in memory only
     */
    public MetricsLog(Path file) {
        this.file = file;
    }

    /**
     * Continues a log after a resume: keeps the lines of steps up to {@code step} (they describe the run up to
     * the checkpoint), drops later ones (the resumed run writes them again), and reloads them for the chart.
     *
     * @param step the checkpoint's step
     */
    public void truncateAfter(long step) {
        if (file == null || !Files.isRegularFile(file)) {
            return;
        }
        StringBuilder kept = new StringBuilder();
        try {
            int lineNo = 0;
            for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode n;
                try {
                    n = JSON.readTree(line);
                } catch (IOException e) {
                    throw new PeftException(file + ":" + lineNo + ": not a JSON object: " + e.getMessage().split("\n")[0]);
                }
                if (n == null || !n.has("step")) {
                    throw new PeftException(file + ":" + lineNo + ": metrics line without \"step\"");
                }
                if (n.get("step").asLong() <= step) {
                    kept.append(line).append('\n');
                    remember(n);
                }
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read metrics: " + e.getMessage(), e);
        }
        AtomicFiles.writeString(file, kept.toString());
    }

    private void remember(JsonNode n) {
        long step = n.get("step").asLong();
        if (n.has("loss")) {
            train.add(new double[] {step, n.get("loss").asDouble()});
        }
        n.fieldNames().forEachRemaining(k -> {
            if (k.startsWith("eval_")) {
                eval.computeIfAbsent(k, x -> new ArrayList<>()).add(new double[] {step, n.get(k).asDouble()});
            }
        });
    }

    /**
     * Records one optimizer step (and appends its line to the file).
     *
     * @param step the 1-based step number
     * @param loss the training loss of the step
     * @param lr the learning rate used
     * @param tokensPerSecond training throughput since the last line
     * @param evalMetrics evaluation metrics measured after this step (keys without the {@code eval_} prefix), or null
     */
    public void step(long step, double loss, double lr, double tokensPerSecond, Map<String, Double> evalMetrics) {
        ObjectNode n = JSON.createObjectNode();
        n.put("step", step);
        n.put("loss", loss);
        n.put("lr", lr);
        n.put("tokens_per_s", Math.round(tokensPerSecond * 10) / 10.0);
        if (evalMetrics != null) {
            evalMetrics.forEach((k, v) -> n.put("eval_" + k, v));
        }
        remember(n);
        if (file != null) {
            try {
                if (file.toAbsolutePath().getParent() != null) {
                    Files.createDirectories(file.toAbsolutePath().getParent());
                }
                AtomicFiles.appendLine(file, JSON.writeValueAsString(n)); // the line lands whole, even if killed
            } catch (IOException | java.io.UncheckedIOException e) {
                throw new PeftException(file + ": cannot append metrics: " + e.getMessage(), e);
            }
        }
    }

    /** @return the training losses recorded so far, in step order */
    public List<Double> losses() {
        return train.stream().map(x -> x[1]).toList();
    }

    /**
     * Draws the training loss and every evaluation metric against the step and writes a PNG atomically.
     *
     * @param png the image file
     */
    public void writeChart(Path png) {
        if (System.getProperty("java.awt.headless") == null) {
            System.setProperty("java.awt.headless", "true");
        }
        XYChart chart = new XYChartBuilder().width(800).height(500).title("training").xAxisTitle("step")
                .yAxisTitle("value").build();
        chart.getStyler().setMarkerSize(4);
        if (!train.isEmpty()) {
            chart.addSeries("train loss", column(train, 0), column(train, 1)).setMarker(SeriesMarkers.NONE);
        }
        eval.entrySet().stream().filter(e -> !"eval_perplexity".equals(e.getKey()))
                .forEach(e -> chart.addSeries(e.getKey(), column(e.getValue(), 0), column(e.getValue(), 1))
                        .setMarker(SeriesMarkers.CIRCLE));
        if (train.isEmpty() && eval.isEmpty()) {
            return;
        }
        try {
            AtomicFiles.writeBytes(png, BitmapEncoder.getBitmapBytes(chart, BitmapEncoder.BitmapFormat.PNG));
        } catch (IOException e) {
            throw new PeftException(png + ": cannot draw the chart: " + e.getMessage(), e);
        }
    }

    /**
     * Draws several runs side by side in one PNG (written atomically): the training loss of every run in the left
     * panel, one evaluation metric of every run in the right panel, a series per run named by its key.
     *
     * @param png the image file
     * @param runs the runs' logs by display name, in legend order
     * @param evalMetric the evaluation metric to compare, without the {@code eval_} prefix (e.g. {@code accuracy})
     */
    public static void writeComparisonChart(Path png, Map<String, MetricsLog> runs, String evalMetric) {
        if (System.getProperty("java.awt.headless") == null) {
            System.setProperty("java.awt.headless", "true");
        }
        XYChart loss = new XYChartBuilder().width(640).height(460)
                .title("training loss (moving average, weight " + SMOOTHING + ")").xAxisTitle("step")
                .yAxisTitle("loss").build();
        XYChart metric = new XYChartBuilder().width(640).height(460).title("validation " + evalMetric)
                .xAxisTitle("step").yAxisTitle(evalMetric).build();
        String key = "eval_" + evalMetric;
        runs.forEach((name, log) -> {
            if (!log.train.isEmpty()) {
                loss.addSeries(name, column(log.train, 0), smoothed(column(log.train, 1))).setMarker(SeriesMarkers.NONE);
            }
            List<double[]> v = log.eval.get(key);
            if (v != null && !v.isEmpty()) {
                metric.addSeries(name, column(v, 0), column(v, 1)).setMarker(SeriesMarkers.CIRCLE);
            }
        });
        if (loss.getSeriesMap().isEmpty() && metric.getSeriesMap().isEmpty()) {
            return;
        }
        java.awt.image.BufferedImage left = BitmapEncoder.getBufferedImage(loss);
        java.awt.image.BufferedImage right = BitmapEncoder.getBufferedImage(metric);
        java.awt.image.BufferedImage both = new java.awt.image.BufferedImage(left.getWidth() + right.getWidth(),
                Math.max(left.getHeight(), right.getHeight()), java.awt.image.BufferedImage.TYPE_INT_RGB);
        java.awt.Graphics2D g = both.createGraphics();
        g.drawImage(left, 0, 0, null);
        g.drawImage(right, left.getWidth(), 0, null);
        g.dispose();
        AtomicFiles.write(png, os -> {
            if (!javax.imageio.ImageIO.write(both, "png", os)) {
                throw new IOException("no PNG writer available");
            }
        });
    }

    /** Weight of the past in the comparison chart's loss curves (per-step losses of small batches are noisy). */
    static final double SMOOTHING = 0.9;

    /** An exponential moving average with bias correction (TensorBoard's smoothing): starts at the first value. */
    static double[] smoothed(double[] y) {
        double[] out = new double[y.length];
        double avg = 0;
        double weight = 0;
        for (int i = 0; i < y.length; i++) {
            avg = SMOOTHING * avg + (1 - SMOOTHING) * y[i];
            weight = SMOOTHING * weight + (1 - SMOOTHING);
            out[i] = avg / weight;
        }
        return out;
    }

    private static double[] column(List<double[]> rows, int c) {
        return rows.stream().mapToDouble(r -> r[c]).toArray();
    }
}
