package io.github.peft4j.reliability;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftMethods;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Crash safety: a child JVM ({@link CrashChild}) runs every writer of the library in a loop and is killed with
 * SIGKILL at a random moment, {@value #KILLS} times; after every kill each writer's files are checked: the previous
 * version intact or the new one complete (never a torn file, never a checkpoint that does not load), and training
 * resumes from the newest checkpoint in the next child. The figures (kills, kills that left a temporary file behind,
 * i.e. landed inside a write, training steps reached) are printed.
 */
class CrashSafetyTest {
    static final int KILLS = 22;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path root;

    @Test
    void everyWriterSurvivesSigkillAtRandomMoments() throws Exception {
        Random r = new Random(42);
        Map<String, int[]> midWrite = new TreeMap<>();
        CrashChild.WRITERS.forEach(w -> midWrite.put(w, new int[1]));
        long lastStep = 0;
        int recovered = 0;
        List<Long> steps = new ArrayList<>();
        for (int kill = 1; kill <= KILLS; kill++) {
            Process child = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-Xmx512m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Dai.djl.offline=true", "-Dai.djl.default_engine=PyTorch",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=error", "-cp", System.getProperty("java.class.path"),
                    CrashChild.class.getName(), root.toString()).redirectErrorStream(true).start();
            BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
            StringBuilder seen = new StringBuilder();
            for (String line; (line = out.readLine()) != null && !line.equals("ready"); ) {
                seen.append(line).append('\n');
            }
            assertTrue(child.isAlive(), "child died before it was ready:\n" + seen);
            Thread.sleep(r.nextInt(400));
            child.destroyForcibly(); // SIGKILL on Linux: no shutdown hooks, no finally blocks
            assertTrue(child.waitFor(30, TimeUnit.SECONDS));
            assertEquals(137, child.exitValue(), "the child was killed, not ended: " + seen);
            for (String w : CrashChild.WRITERS) {
                if (strays(root.resolve(w)) > 0) {
                    midWrite.get(w)[0]++;
                }
            }
            checkAtomicBytes(root.resolve("atomicBytes"));
            checkSafetensors(root.resolve("safetensors"));
            checkAdapter(root.resolve("adapter/adapter"));
            checkModel(root.resolve("modelSave/model"));
            recovered += checkDirectory(root.resolve("directory/out")) ? 1 : 0;
            checkLog(root.resolve("appendLine/log.jsonl"));
            long step = checkTraining(root.resolve("training"));
            assertTrue(step >= lastStep, "training went back from step " + lastStep + " to " + step);
            lastStep = step;
            steps.add(step);
            deleteStrays(root);
        }
        assertTrue(lastStep >= KILLS, "training resumed and progressed after each kill: " + steps);
        StringBuilder b = new StringBuilder("crash safety: " + KILLS + " SIGKILLs survived by every writer; kills that "
                + "landed inside a write (left a temporary file):");
        midWrite.forEach((w, n) -> b.append(' ').append(w).append('=').append(n[0]));
        b.append("; directory swaps rolled back by recoverDirectory: ").append(recovered)
                .append("; training steps at each kill: ").append(steps);
        System.out.println(b);
    }

    private static void checkAtomicBytes(Path dir) throws IOException {
        byte[] b = Files.readAllBytes(dir.resolve("file.bin"));
        assertEquals(CrashChild.BYTES, b.length, "file.bin is whole");
        long v = ByteBuffer.wrap(b).getLong(0);
        assertArrayEquals(CrashChild.content(v, CrashChild.BYTES), b, "file.bin is version " + v + " exactly");
    }

    private static void checkSafetensors(Path dir) {
        try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("w.safetensors")); NDManager m = NDManager.newBaseManager()) {
            float v = Float.parseFloat(f.metadata().get("version"));
            NDArray w = f.load("w", m);
            assertAll(w.toFloatArray(), v, "w.safetensors");
        }
    }

    private static void checkAdapter(Path dir) {
        PeftMethods.read(dir.resolve("adapter_config.json"));
        try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("adapter_model.safetensors"));
                NDManager m = NDManager.newBaseManager()) {
            Float v = null;
            for (String name : f.names()) {
                float[] x = f.load(name, m).toFloatArray();
                v = v == null ? x[0] : v;
                assertAll(x, v, name);
            }
            assertEquals(8, f.names().size(), "lora_A and lora_B of q_proj and v_proj in 2 layers");
        }
    }

    private static void checkModel(Path dir) {
        try (TransformerModel m = Models.load(dir)) {
            float[] w = m.parameters().get("model.norm.weight").array().toFloatArray();
            assertAll(w, w[0], "model.norm.weight");
        }
    }

    /** @return whether the previous directory had to be put back */
    private static boolean checkDirectory(Path out) throws IOException {
        boolean recovered = AtomicFiles.recoverDirectory(out);
        long v = -1;
        for (int i = 0; i < 3; i++) {
            byte[] b = Files.readAllBytes(out.resolve("part-" + i));
            long pv = ByteBuffer.wrap(b).getLong(0);
            v = v < 0 ? pv : v;
            assertEquals(v, pv, "every part of the directory is the same version");
            assertArrayEquals(CrashChild.content(v, 64 * 1024), b);
        }
        return recovered;
    }

    private static void checkLog(Path log) throws IOException {
        String text = Files.readString(log);
        assertTrue(text.endsWith("\n"), "the log ends with a whole line");
        List<String> lines = text.lines().toList();
        for (int i = 0; i < lines.size(); i++) {
            assertEquals(i, JSON.readTree(lines.get(i)).get("i").asInt(), "line " + (i + 1));
        }
    }

    /** @return the newest checkpoint's step */
    private static long checkTraining(Path dir) throws IOException {
        long newest = 0;
        try (Stream<Path> s = Files.list(dir)) {
            for (Path c : s.filter(p -> p.getFileName().toString().matches("checkpoint-\\d+")).toList()) {
                long step = CrashChild.stepOf(c);
                JsonNode st = JSON.readTree(c.resolve("trainer_state.json").toFile());
                assertEquals(step, st.get("global_step").asLong(), c + "/trainer_state.json");
                PeftMethods.read(c.resolve("adapter_config.json"));
                try (NDManager m = NDManager.newBaseManager();
                        SafeTensorsFile a = SafeTensorsFile.open(c.resolve("adapter_model.safetensors"));
                        SafeTensorsFile o = SafeTensorsFile.open(c.resolve("optimizer.safetensors"))) {
                    a.loadAll(m, null);
                    o.loadAll(m, null);
                }
                newest = Math.max(newest, step);
            }
        }
        Path metrics = dir.resolve("metrics.jsonl");
        if (Files.exists(metrics)) {
            for (String line : Files.readAllLines(metrics)) {
                JSON.readTree(line).get("step").asLong();
            }
        }
        return newest;
    }

    private static void assertAll(float[] x, float v, String what) {
        for (int i = 0; i < x.length; i++) {
            if (x[i] != v) {
                throw new AssertionError(what + "[" + i + "] = " + x[i] + ", expected every element " + v
                        + " (a torn or mixed file)");
            }
        }
    }

    /** Temporary files and staging directories a killed write left (dot-named). */
    private static long strays(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return 0;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(p -> p.getFileName().toString().matches("\\..*(\\.tmp.*|\\.old|staged-.*|\\.tmp|\\.deleted-.*)")).count();
        }
    }

    private static void deleteStrays(Path root) throws IOException {
        Map<Path, Boolean> found = new LinkedHashMap<>();
        try (Stream<Path> s = Files.walk(root)) {
            s.filter(p -> p.getFileName().toString().matches("\\..*\\.tmp-[0-9a-f]+|\\.staged-.*|\\..*\\.deleted-[0-9a-f]+")).forEach(p -> found.put(p, true));
        }
        for (Path p : found.keySet()) {
            try (Stream<Path> s = Files.walk(p)) {
                for (Path x : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(x);
                }
            }
        }
    }
}
