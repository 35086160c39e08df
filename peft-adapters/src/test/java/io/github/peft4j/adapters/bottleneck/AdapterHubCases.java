package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.nio.file.Path;

/**
 * The AdapterHub fixtures in {@code peft-adapters/src/test/resources/fixtures/adapterhub} (made by
 * {@code src/test/python/make_adapterhub_fixtures.py}), read through peft-core's {@link Fixtures} (whose case names
 * are relative to its hf-peft root, hence the relative prefix). A missing fixture fails the test.
 */
public final class AdapterHubCases {
    /** From peft-core's hf-peft fixtures root to ours. */
    static final String REL = "../../../../../../peft-adapters/src/test/resources/fixtures/adapterhub/";

    private AdapterHubCases() {}

    public static Path dir(String name) {
        return Fixtures.dir(REL + name).normalize();
    }

    public static String arch(String name) {
        return name.substring(0, name.indexOf('_'));
    }

    public static TransformerModel base(String arch) {
        return Models.load(dir("bases/" + arch));
    }

    public static JsonNode json(String name, String file) {
        return Fixtures.json(REL + name, file);
    }

    public static NDArray ids(NDManager m, String name, String key) {
        return Fixtures.ids(m, REL + name, key);
    }

    public static NDArray logits(NDManager m, String name, String file, String key) {
        return Fixtures.logits(m, REL + name, file, key);
    }

    public static NDArray forward(PeftModel peft, NDManager m, String name) {
        return peft.forward(ModelInput.of(ids(m, name, "input_ids"), ids(m, name, "attention_mask"))).logits();
    }

    public static NDArray forward(TransformerModel model, NDManager m, String name) {
        return model.forward(ModelInput.of(ids(m, name, "input_ids"), ids(m, name, "attention_mask"))).logits();
    }

    /** The weight file forms of an AdapterHub directory. */
    public static final java.util.List<String> FORMS = java.util.List.of("safetensors", "bin");

    /**
     * A copy of a case's {@code adapter/} directory holding one weights form only: {@code safetensors}
     * ({@code adapter.safetensors}, {@code model_head.safetensors}) or {@code bin} (AdapterHub's default torch pickles
     * {@code pytorch_adapter.bin}, {@code pytorch_model_head.bin}, read by the safe TorchBinFile).
     */
    public static Path form(String name, String form, Path tmp) {
        Path from = dir(name).resolve("adapter");
        Path to = tmp.resolve(name + "-" + form);
        String drop = "bin".equals(form) ? ".safetensors" : ".bin";
        try {
            java.nio.file.Files.createDirectories(to);
            boolean weights = false;
            try (java.util.stream.Stream<Path> files = java.nio.file.Files.list(from)) {
                for (Path f : files.toList()) {
                    String n = f.getFileName().toString();
                    if (!n.endsWith(drop)) {
                        java.nio.file.Files.copy(f, to.resolve(n));
                        weights |= n.startsWith("adapter.") || n.startsWith("pytorch_adapter");
                    }
                }
            }
            if (!weights) {
                throw new AssertionError(from + ": the fixture has no " + form + " weights (rerun the generator)");
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        return to;
    }
}
