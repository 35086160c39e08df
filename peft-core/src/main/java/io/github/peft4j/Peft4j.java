package io.github.peft4j;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.LibUtils;
import ai.djl.util.Platform;
import ai.djl.util.Utils;
import io.github.peft4j.nn.FusedOps;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/** Library constants and what peft4j runs on. */
public final class Peft4j {
    /** The library version. */
    public static final String VERSION = "0.1.0";

    private Peft4j() {}

    /**
     * Describes the engine in use, loading it if it is not loaded yet: peft4j's version and the libtorch version,
     * flavour and folder DJL runs on, its JNI library, and whether the fused ops and BF16 are available.
     *
     * @return the description
     */
    public static EngineInfo engineInfo() {
        Engine engine = Engine.getEngine("PyTorch");
        String version = engine.getVersion();
        String override = Utils.getEnvOrSystemProperty("PYTORCH_LIBRARY_PATH");
        String flavour = Utils.getEnvOrSystemProperty("PYTORCH_FLAVOR");
        if (flavour == null || flavour.isEmpty()) {
            flavour = Platform.detectPlatform("pytorch").getFlavor();
        }
        boolean bf16 = FusedOps.bf16Supported();
        return new EngineInfo(VERSION, Engine.getDjlVersion(), version, flavour, LibUtils.getLibtorchPath(),
                override != null && !override.isEmpty() ? "PYTORCH_LIBRARY_PATH" : "DJL's pytorch-native jar",
                loadedLibrary("djl_torch"), FusedOps.status(), FusedOps.enabled(), bf16, engine.getGpuCount());
    }

    /** The path of a loaded shared library whose file name contains {@code name} (Linux: /proc/self/maps), or null. */
    private static String loadedLibrary(String name) {
        Path maps = Path.of("/proc/self/maps");
        if (!Files.isReadable(maps)) {
            return null;
        }
        try {
            List<String> lines = Files.readAllLines(maps);
            for (String line : lines) {
                int slash = line.indexOf('/');
                if (slash >= 0) {
                    String path = line.substring(slash);
                    String file = path.substring(path.lastIndexOf('/') + 1);
                    if (file.contains(name) && file.contains(".so")) {
                        return path;
                    }
                }
            }
        } catch (IOException e) {
            return null;
        }
        return null;
    }
}
