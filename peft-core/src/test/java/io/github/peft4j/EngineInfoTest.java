package io.github.peft4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import io.github.peft4j.nn.FusedOps;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@link Peft4j#engineInfo()} on whichever libtorch the tests run on (stock 2.7.1, or through with-torch.sh). */
class EngineInfoTest {
    @Test
    void describesTheLoadedLibtorch() {
        EngineInfo info = Peft4j.engineInfo();
        System.out.println(info);
        System.out.println(info.summary());
        assertEquals(Peft4j.VERSION, info.peft4jVersion());
        assertEquals("0.36.0", info.djlVersion());
        assertEquals(Engine.getEngine("PyTorch").getVersion(), info.libtorchVersion());
        assertTrue(Files.isRegularFile(Path.of(info.libtorchPath(), "libtorch.so")), info.libtorchPath());
        assertNotNull(info.jniLibrary(), "libdjl_torch.so found in /proc/self/maps");
        assertTrue(Files.isRegularFile(Path.of(info.jniLibrary())), info.jniLibrary());
        assertTrue(info.flavour().startsWith("cpu") || info.flavour().startsWith("cu"), info.flavour());
        assertEquals(FusedOps.enabled(), info.fused());
        String override = System.getenv("PYTORCH_LIBRARY_PATH");
        if (override != null && !override.isEmpty()) {
            assertEquals("PYTORCH_LIBRARY_PATH", info.source());
            assertEquals(Path.of(override).toAbsolutePath().normalize(), Path.of(info.libtorchPath()).normalize());
            assertEquals(System.getenv("PYTORCH_VERSION"), info.libtorchVersion());
            assertEquals(System.getenv("PYTORCH_FLAVOR"), info.flavour());
        } else {
            assertEquals("DJL's pytorch-native jar", info.source());
            assertEquals("2.7.1", info.libtorchVersion());
            assertFalse(info.bf16(), "stock DJL JNI: no BF16");
        }
        if (FusedOps.available()) { // with-torch.sh builds the BF16-patched JNI beside the fused library
            assertTrue(info.bf16(), "patched JNI + fused library: BF16 probe reads back BFLOAT16");
        }
        assertEquals(info.peft4jVersion(), info.toMap().get("peft4j"));
        assertTrue(info.summary().contains("libtorch " + info.libtorchVersion()), info.summary());
    }
}
