package io.github.peft4j.reliability;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.data.Example;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

/**
 * The child JVM of {@link CrashSafetyTest}: every writer of the library runs in its own thread, in a loop, writing
 * version after version of its file(s) under {@code <root>/<writer>/}, until the parent kills the JVM with SIGKILL.
 * Each writer continues from what the previous (killed) child left, so the parent checks the old-or-new property
 * on files that were being replaced, and training resumes from the newest checkpoint after every kill. Prints
 * {@code ready} once every writer has finished one write in this JVM.
 */
public final class CrashChild {
    /** The writers, by directory name. */
    static final List<String> WRITERS = List.of("atomicBytes", "safetensors", "adapter", "modelSave", "directory",
            "appendLine", "training");

    static final int BYTES = 256 * 1024;

    private CrashChild() {}

    /**
     * @param args the root directory
     * @throws Exception never in practice: the parent kills this JVM
     */
    public static void main(String[] args) throws Exception {
        Path root = Path.of(args[0]);
        CountDownLatch ready = new CountDownLatch(WRITERS.size());
        List<Thread> threads = new ArrayList<>();
        for (String w : WRITERS) {
            Path dir = root.resolve(w);
            Files.createDirectories(dir);
            Thread t = new Thread(() -> {
                try {
                    run(w, dir, ready);
                } catch (Throwable e) {
                    System.out.println("writer " + w + " failed: " + e);
                    e.printStackTrace(System.out);
                    System.out.flush();
                    Runtime.getRuntime().halt(3);
                }
            }, "writer-" + w);
            t.setDaemon(true);
            threads.add(t);
            t.start();
        }
        ready.await();
        System.out.println("ready");
        System.out.flush();
        for (Thread t : threads) {
            t.join();
        }
    }

    private static void run(String writer, Path dir, CountDownLatch ready) throws Exception {
        switch (writer) {
            case "atomicBytes" -> loop(ready, v -> AtomicFiles.writeBytes(dir.resolve("file.bin"), content(v, BYTES)));
            case "safetensors" -> {
                try (NDManager m = NDManager.newBaseManager()) {
                    loop(ready, v -> {
                        try (NDArray a = m.full(new Shape(256, 256), (float) v)) {
                            SafeTensorsWriter.write(dir.resolve("w.safetensors"), Map.of("w", a),
                                    Map.of("format", "pt", "version", Long.toString(v)));
                        }
                    });
                }
            }
            case "adapter" -> {
                try (TransformerModel model = TinyModels.llama()) {
                    PeftModel peft = PeftModel.wrap(model);
                    peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).targetModules("q_proj", "v_proj"));
                    loop(ready, v -> {
                        for (Param p : peft.trainableParameters().values()) {
                            fill(p, v);
                        }
                        peft.saveAdapter("default", dir.resolve("adapter"));
                    });
                }
            }
            case "modelSave" -> {
                try (TransformerModel model = TinyModels.llama()) {
                    Param p = model.parameters().get("model.norm.weight");
                    loop(ready, v -> {
                        fill(p, v);
                        model.save(dir.resolve("model"));
                    });
                }
            }
            case "directory" -> loop(ready, v -> {
                Path staged = Files.createTempDirectory(dir, ".staged-");
                for (int i = 0; i < 3; i++) {
                    Files.write(staged.resolve("part-" + i), content(v, 64 * 1024));
                }
                AtomicFiles.replaceDirectory(staged, dir.resolve("out"));
            });
            case "appendLine" -> {
                Path log = dir.resolve("log.jsonl");
                long start = Files.exists(log) ? Files.readAllLines(log).size() : 0;
                String pad = "x".repeat(300);
                loop(ready, v -> AtomicFiles.appendLine(log, "{\"i\": " + (start + v - 1) + ", \"pad\": \"" + pad + "\"}"));
            }
            case "training" -> train(dir, ready);
            default -> throw new IllegalArgumentException(writer);
        }
    }

    /** Trains a tiny LoRA, a checkpoint every step, resuming from the newest checkpoint a killed child left. */
    private static void train(Path dir, CountDownLatch ready) throws Exception {
        Random r = new Random(3);
        List<Example> data = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            int[] ids = new int[8];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(100);
            }
            data.add(Example.tokens(ids));
        }
        Path latest = latestCheckpoint(dir);
        try (TransformerModel model = TinyModels.llama(); Sgd sgd = Sgd.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter("default", new LoraConfig().r(4).loraAlpha(8).targetModules("q_proj", "v_proj"));
            boolean[] first = {true};
            PeftTrainer.Builder b = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(sgd)
                    .optLearningRate(0.01).optMaxSteps(1_000_000).optBatchSize(2).optOutputDir(dir)
                    .optCheckpointEvery(1).optKeepCheckpoints(3).optLogEvery(0).optStepListener(s -> {
                        if (first[0] && s.step() > (latest == null ? 1 : stepOf(latest) + 1)) {
                            first[0] = false;
                            ready.countDown(); // a checkpoint was written in this JVM
                        }
                    });
            if (latest != null) {
                b.optResumeFrom(latest);
            }
            try (PeftTrainer t = b.build()) {
                t.train();
            }
        }
    }

    /** Sets every element of a parameter to {@code v} (a value copy, as resuming does). */
    private static void fill(Param p, long v) {
        NDArray a = p.array();
        try (NDArray x = a.getManager().full(a.getShape(), (float) v, a.getDataType())) {
            x.copyTo(a);
        }
    }

    static Path latestCheckpoint(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return null;
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().matches("checkpoint-\\d+"))
                    .max(Comparator.comparingLong(CrashChild::stepOf)).orElse(null);
        }
    }

    static long stepOf(Path checkpoint) {
        return Long.parseLong(checkpoint.getFileName().toString().substring("checkpoint-".length()));
    }

    /** One write of version {@code v} (1, 2, ...). */
    @FunctionalInterface
    interface Write {
        void write(long v) throws Exception;
    }

    private static void loop(CountDownLatch ready, Write w) throws Exception {
        for (long v = 1; ; v++) {
            w.write(v);
            if (v == 1) {
                ready.countDown();
            }
        }
    }

    /** {@code n} bytes: the version, then bytes drawn from a generator seeded with it. */
    static byte[] content(long v, int n) {
        byte[] b = new byte[n];
        new Random(v).nextBytes(b);
        ByteBuffer.wrap(b).putLong(0, v);
        return b;
    }
}
