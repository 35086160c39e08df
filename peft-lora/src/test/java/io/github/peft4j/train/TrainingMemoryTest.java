package io.github.peft4j.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.data.Example;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/**
 * Native memory stays flat over 2,000 tiny LoRA steps (tiny Llama, batch 2, sequence 16, AdamW, clipping):
 * the resident set size ({@code VmRSS} of {@code /proc/self/status}) grows by less than 64 MiB between step 500
 * (1,000 when the Java heap is not pre-touched) and step 2,000. It takes minutes on a 2-core machine, so it runs only when asked:
 * {@code mvn -pl peft-lora -am test -Dtest=TrainingMemoryTest -Dpeft4j.memoryTest=true
 * -Dsurefire.failIfNoSpecifiedTests=false}, or through {@link #main} in a JVM with a fixed, pre-touched heap
 * ({@code -Xms256m -Xmx256m -XX:+AlwaysPreTouch}) so that RSS growth is native growth only (in surefire's JVM
 * the first pass of the young generation over a lazily touched 2 GiB heap shows up as RSS growth too).
 * It prints the RSS by step.
 */
class TrainingMemoryTest {

    static long rssKiB() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot read /proc/self/status", e);
        }
        throw new IllegalStateException("no VmRSS line in /proc/self/status");
    }

    /**
     * Runs the measurement in a JVM of one's own choosing (e.g. {@code -Xms256m -Xmx256m -XX:+AlwaysPreTouch}).
     *
     * @param args unused
     */
    public static void main(String[] args) {
        new TrainingMemoryTest().rssIsFlatOverTwoThousandSteps();
    }

    @Test
    @EnabledIfSystemProperty(named = "peft4j.memoryTest", matches = "true")
    void rssIsFlatOverTwoThousandSteps() {
        Random r = new Random(1);
        List<Example> data = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            int[] ids = new int[16];
            for (int j = 0; j < 16; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            data.add(Example.tokens(ids));
        }
        Map<Long, Long> rss = new LinkedHashMap<>();
        List<Long> probes = List.of(1L, 100L, 500L, 1000L, 1500L, 2000L);
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftTrainerTest.loraLlama(model, 0.05);
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optLearningRate(1e-3)
                    .optMaxSteps(2000).optBatchSize(2).optLogEvery(500).optStepListener(s -> {
                        if (probes.contains(s.step())) {
                            rss.put(s.step(), rssKiB());
                            Runtime rt = Runtime.getRuntime();
                            System.out.printf(java.util.Locale.ROOT, "step %d: VmRSS %.1f MiB, Java heap committed %.1f MiB, used %.1f MiB%n",
                                    s.step(), rss.get(s.step()) / 1024.0, rt.totalMemory() / 1048576.0,
                                    (rt.totalMemory() - rt.freeMemory()) / 1048576.0);
                        }
                    }).build()) {
                List<Double> losses = t.train().losses();
                assertEquals(2000, losses.size());
                assertTrue(losses.get(1999) < losses.get(0), "loss " + losses.get(0) + " -> " + losses.get(1999));
            }
        }
        System.out.println("VmRSS (MiB) by step: " + rss.entrySet().stream()
                .map(e -> e.getKey() + "=" + String.format(java.util.Locale.ROOT, "%.1f", e.getValue() / 1024.0)).toList());
        // with a pre-touched heap RSS growth is native growth from step 500 on; with a lazily touched heap (surefire's
        // -Xmx2g) the young generation's first pass over fresh pages adds RSS until about step 1500, so start at 1000
        boolean preTouched = java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
                .contains("-XX:+AlwaysPreTouch");
        long from = preTouched ? 500L : 1000L;
        long growth = rss.get(2000L) - rss.get(from);
        assertTrue(growth < 64 * 1024, "RSS grew by " + growth / 1024 + " MiB between step " + from + " and 2000: " + rss);
    }
}
