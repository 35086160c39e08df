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
final class AdapterHubCases {
    /** From peft-core's hf-peft fixtures root to ours. */
    static final String REL = "../../../../../../peft-adapters/src/test/resources/fixtures/adapterhub/";

    private AdapterHubCases() {}

    static Path dir(String name) {
        return Fixtures.dir(REL + name).normalize();
    }

    static String arch(String name) {
        return name.substring(0, name.indexOf('_'));
    }

    static TransformerModel base(String arch) {
        return Models.load(dir("bases/" + arch));
    }

    static JsonNode json(String name, String file) {
        return Fixtures.json(REL + name, file);
    }

    static NDArray ids(NDManager m, String name, String key) {
        return Fixtures.ids(m, REL + name, key);
    }

    static NDArray logits(NDManager m, String name, String file, String key) {
        return Fixtures.logits(m, REL + name, file, key);
    }

    static NDArray forward(PeftModel peft, NDManager m, String name) {
        return peft.forward(ModelInput.of(ids(m, name, "input_ids"), ids(m, name, "attention_mask"))).logits();
    }

    static NDArray forward(TransformerModel model, NDManager m, String name) {
        return model.forward(ModelInput.of(ids(m, name, "input_ids"), ids(m, name, "attention_mask"))).logits();
    }
}
