package io.github.peft4j.reliability;

import io.github.peft4j.data.Example;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Soak benchmarks (not CI): {@code Soak serve MINUTES} keeps {@code peft4j serve} under the {@link ServeLoad} mix
 * (4 clients) for that long and samples the process RSS every 30 s; {@code Soak train STEPS} trains a tiny Llama
 * LoRA for that many steps and samples, after a GC, the RSS outside the Java heap (libtorch's native memory) every
 * 1/20 of the run. Each prints its samples and the growth between the first and the second half of the run, the figure
 * that says whether memory is flat. Run with {@code scripts/soak.sh}.
 */
public final class Soak {
    private Soak() {}

    /** @return this process's resident set size in MiB (Linux) */
    static double rssMiB() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("\\D", "")) / 1024.0;
                }
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot read /proc/self/status: " + e);
        }
        throw new IllegalStateException("no VmRSS in /proc/self/status");
    }

    /**
     * @param args {@code serve MINUTES} or {@code train STEPS}
     * @throws Exception if the run fails
     */
    public static void main(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("serve")) {
            serve(Double.parseDouble(args[1]));
        } else if (args.length == 2 && args[0].equals("train")) {
            train(Long.parseLong(args[1]));
        } else {
            System.err.println("usage: Soak serve MINUTES | Soak train STEPS");
            System.exit(2);
        }
    }

    private static void serve(double minutes) throws Exception {
        List<double[]> samples = new ArrayList<>(); // seconds, requests, rss
        try (ServeLoad.Serve s = new ServeLoad.Serve()) {
            long t0 = System.nanoTime();
            long end = t0 + (long) (minutes * 60e9);
            long nextSample = t0;
            int requests = 0;
            int errors = 0;
            int mismatches = 0;
            List<Double> p99 = new ArrayList<>();
            for (long round = 1; System.nanoTime() < end; round++) {
                ServeLoad.Report r = ServeLoad.run(s.uri, 4, 20, round % 50); // 50 request mixes, over and over
                requests += r.requests();
                errors += r.errors();
                mismatches += r.mismatches();
                p99.add(r.p99Ms());
                if (System.nanoTime() >= nextSample) {
                    double sec = (System.nanoTime() - t0) / 1e9;
                    samples.add(new double[] {sec, requests, rssMiB()});
                    System.out.printf("serve soak: %6.0f s  %7d requests  RSS %7.1f MiB%n", sec, requests, rssMiB());
                    nextSample += 30_000_000_000L;
                }
            }
            samples.add(new double[] {(System.nanoTime() - t0) / 1e9, requests, rssMiB()});
            p99.sort(null);
            System.out.printf("serve soak: %.1f min, %d requests (plus the sequential reference passes), %d errors, %d "
                    + "mixed-up; median round p99 %.1f ms; %s%n", minutes, requests, errors, mismatches,
                    p99.get(p99.size() / 2), growth(samples));
        }
    }

    private static void train(long steps) throws Exception {
        Random r = new Random(1);
        List<Example> data = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            int[] ids = new int[16];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(120);
            }
            data.add(Example.tokens(ids));
        }
        List<double[]> samples = new ArrayList<>();
        long every = Math.max(1, steps / 20);
        long t0 = System.nanoTime();
        try (TransformerModel model = TinyModels.llama(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(8).loraAlpha(16).targetModules("q_proj", "k_proj", "v_proj",
                    "o_proj"));
            double[] lastLoss = {0};
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.01).optMaxSteps(steps).optBatchSize(4).optLogEvery(0).optStepListener(s -> {
                        lastLoss[0] = s.loss();
                        if (s.step() == 1 || s.step() % every == 0) {
                            double sec = (System.nanoTime() - t0) / 1e9;
                            System.gc(); // so that the heap figures are live data, not garbage
                            Runtime rt = Runtime.getRuntime();
                            double heapUsed = (rt.totalMemory() - rt.freeMemory()) / 1048576.0;
                            double nativeMiB = rssMiB() - rt.totalMemory() / 1048576.0; // RSS outside the Java heap
                            samples.add(new double[] {sec, s.step(), nativeMiB});
                            System.out.printf("train soak: step %6d  %6.0f s  loss %.4f  RSS %7.1f MiB  heap live %6.1f "
                                    + "MiB  RSS outside the heap %7.1f MiB%n", s.step(), sec, s.loss(), rssMiB(), heapUsed,
                                    nativeMiB);
                        }
                    }).build()) {
                t.train();
            }
            System.out.printf("train soak: %d steps in %.0f s, final loss %.4f; %s%n", steps,
                    (System.nanoTime() - t0) / 1e9, lastLoss[0], growth(samples));
        }
    }

    /** Growth (RSS, or RSS outside the heap for training) from the sample at a quarter of the run (after warm-up) to the last, per 1,000 units of column 1. */
    private static String growth(List<double[]> s) {
        double[] warm = s.get(Math.min(s.size() - 1, s.size() / 4));
        double[] last = s.get(s.size() - 1);
        double perK = last[1] > warm[1] ? (last[2] - warm[2]) / (last[1] - warm[1]) * 1000 : 0;
        double max = s.stream().mapToDouble(x -> x[2]).max().orElse(0);
        return String.format("memory after warm-up %.1f MiB, at the end %.1f MiB (%+.1f MiB, %+.3f MiB per 1,000), peak "
                + "%.1f MiB", warm[2], last[2], last[2] - warm[2], perK, max);
    }
}
