package io.github.peft4j;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What peft4j runs on: its own version and the libtorch DJL loaded (version, flavour, folder, JNI library), and
 * whether peft4j's fused ops and BF16 arrays are available. From {@link Peft4j#engineInfo()}.
 *
 * @param peft4jVersion peft4j's version
 * @param djlVersion DJL's version
 * @param libtorchVersion the libtorch version DJL loaded, e.g. {@code 2.13.0}
 * @param flavour the libtorch flavour: {@code cpu}, {@code cu130}, ...
 * @param libtorchPath the folder libtorch was loaded from
 * @param source where that libtorch came from: {@code PYTORCH_LIBRARY_PATH} (e.g. a Python torch through
 *     {@code scripts/with-torch.sh}) or {@code DJL's pytorch-native jar}
 * @param jniLibrary the path of DJL's JNI library ({@code libdjl_torch.so}) in this process, or null if unknown
 * @param fusedOps the fused-op library's status ({@link io.github.peft4j.nn.FusedOps#status()})
 * @param fused whether the fused ops are in use
 * @param bf16 whether BFLOAT16 arrays are usable (the BF16-patched JNI; probed through the fused library)
 * @param gpus the number of GPUs DJL sees
 */
public record EngineInfo(String peft4jVersion, String djlVersion, String libtorchVersion, String flavour,
        String libtorchPath, String source, String jniLibrary, String fusedOps, boolean fused, boolean bf16, int gpus) {

    /** @return the fields by name, in declaration order (e.g. for JSON) */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("peft4j", peft4jVersion);
        m.put("djl", djlVersion);
        m.put("libtorch", libtorchVersion);
        m.put("flavour", flavour);
        m.put("libtorch_path", libtorchPath);
        m.put("source", source);
        m.put("jni_library", jniLibrary);
        m.put("fused_ops", fusedOps);
        m.put("fused", fused);
        m.put("bf16", bf16);
        m.put("gpus", gpus);
        return m;
    }

    /**
     * @return e.g. {@code peft4j 0.1.0 (DJL 0.36.0), libtorch 2.13.0 cpu at /…/torch/lib (PYTORCH_LIBRARY_PATH),
     *     fused ops on, bf16 yes}
     */
    public String summary() {
        return "peft4j " + peft4jVersion + " (DJL " + djlVersion + "), libtorch " + libtorchVersion + " " + flavour
                + " at " + libtorchPath + " (" + source + "), fused ops " + (fused ? "on" : "off") + ", bf16 "
                + (bf16 ? "yes" : "no") + (gpus > 0 ? ", " + gpus + " GPU(s)" : "");
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder();
        b.append("peft4j   ").append(peft4jVersion).append('\n');
        b.append("DJL      ").append(djlVersion).append(" (PyTorch engine)\n");
        b.append("libtorch ").append(libtorchVersion).append(' ').append(flavour).append(" at ").append(libtorchPath)
                .append(" (").append(source).append(")\n");
        b.append("JNI      ").append(jniLibrary == null ? "unknown" : jniLibrary).append('\n');
        b.append("fused    ").append(fused ? "on: " : "off: ").append(fusedOps).append('\n');
        b.append("bf16     ").append(bf16 ? "yes" : "no (stock DJL JNI, or no fused library to probe it)").append('\n');
        b.append("gpus     ").append(gpus);
        return b.toString();
    }
}
