package io.github.peft4j.peft;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.HookSite;
import io.github.peft4j.model.KvCache;
import io.github.peft4j.model.KvPrefixHook;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** The spine v2 pieces that need no method module: hook sites, code registration, configs as values. */
class SpineTest {
    @BeforeAll
    static void register() {
        PeftMethods.register(new SiteMethod());
    }

    static TransformerModel tiny(String arch) {
        return switch (arch) {
            case "llama" -> TinyModels.llama();
            case "gpt2" -> TinyModels.gpt2();
            default -> TinyModels.bert(TaskType.SEQ_CLS);
        };
    }

    private static float[] logits(PeftModel peft, NDArray ids) {
        return peft.forward(ModelInput.of(ids, null)).logits().toFloatArray();
    }

    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2", "bert"})
    void everyModelDeclaresEverySitePerLayer(String arch) {
        try (TransformerModel model = tiny(arch)) {
            for (SiteRole role : SiteRole.values()) {
                int expected = role == SiteRole.EMBEDDING_OUTPUT ? 1 : model.numLayers();
                assertEquals(expected, model.sites(role).size(), arch + " " + role);
                model.sites(role).forEach(s -> assertTrue(s.isEmpty()));
            }
            assertEquals("layers.1.ffn_output", model.site(SiteRole.FFN_OUTPUT, 1).name());
            assertThrows(PeftException.class, () -> model.site(SiteRole.FFN_OUTPUT, model.numLayers()));
        }
    }

    /** A method at every site of every role, scale 0: bit-identical logits; scale 1: changed; removal restores. */
    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2", "bert"})
    void aZeroSiteMethodLeavesLogitsBitIdenticalAndEverySiteIsCalled(String arch) {
        List<SiteRole> roles = List.of(SiteRole.ATTENTION_OUTPUT, SiteRole.FFN_OUTPUT, SiteRole.ATTENTION_PARALLEL,
                SiteRole.FFN_PARALLEL, SiteRole.EMBEDDING_OUTPUT);
        try (TransformerModel model = tiny(arch); NDManager m = NDManager.newBaseManager()) {
            PeftModel peft = PeftModel.wrap(model);
            NDArray ids = TinyModels.ids(m, 2, 6, 3);
            float[] base = logits(peft, ids);
            for (SiteRole role : roles) {
                SiteMethod.Config zero = new SiteMethod.Config();
                zero.role = role.name();
                zero.scale = 0;
                peft.addAdapter("zero", zero);
                assertArrayEquals(base, logits(peft, ids), 0f, arch + " " + role + ": a zero site output changed the logits");
                peft.deleteAdapter("zero");
                SiteMethod.Config one = new SiteMethod.Config();
                one.role = role.name();
                peft.addAdapter("one", one);
                float[] changed = logits(peft, ids);
                assertTrue(maxDiff(base, changed) > 1e-4, arch + " " + role + ": the site was not called");
                try (AutoCloseable off = peft.disabled()) {
                    assertArrayEquals(base, logits(peft, ids), 0f);
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
                peft.deleteAdapter("one");
                model.sites(role).forEach(s -> assertTrue(s.isEmpty(), "removal leaves no hook"));
                assertArrayEquals(base, logits(peft, ids), 0f);
            }
        }
    }

    /**
     * A key/value prefix at the KV_PREFIX sites equals the same keys and values given as a cache with explicit
     * positions 0..S-1 (the two differ only in where positions start).
     */
    @ParameterizedTest
    @ValueSource(strings = {"llama", "gpt2", "bert"})
    void kvPrefixSiteEqualsTheSamePrefixGivenAsACache(String arch) {
        try (TransformerModel model = tiny(arch); NDManager m = NDManager.newBaseManager()) {
            int b = 2;
            int s = 5;
            int n = 3;
            NDArray ids = TinyModels.ids(m, b, s, 11);
            List<NDArray> keys = new ArrayList<>();
            List<NDArray> values = new ArrayList<>();
            Shape kv = new Shape(b, model.numKeyValueHeads(), n, model.headDim());
            for (int l = 0; l < model.numLayers(); l++) {
                keys.add(m.randomNormal(0f, 1f, kv, DataType.FLOAT32));
                values.add(m.randomNormal(0f, 1f, kv, DataType.FLOAT32));
            }
            NDArray pos = m.arange(0, s, 1, DataType.INT64).reshape(1, s).repeat(0, b);
            NDArray fullMask = m.ones(new Shape(b, n + s), DataType.INT64);
            float[] viaCache = model.forward(new ModelInput(ids, null, fullMask, null, pos, new KvCache(keys, values), false))
                    .logits().toFloatArray();
            for (int l = 0; l < model.numLayers(); l++) {
                NDArray k = keys.get(l);
                NDArray v = values.get(l);
                model.site(SiteRole.KV_PREFIX, l).installPrefix("p", hidden -> new KvPrefixHook.Prefix(k, v));
            }
            float[] viaSite = model.forward(new ModelInput(ids, null, m.ones(new Shape(b, s), DataType.INT64), null, null,
                    null, false)).logits().toFloatArray();
            assertTrue(maxDiff(viaCache, viaSite) < 1e-5, arch + ": " + maxDiff(viaCache, viaSite));
            model.sites(SiteRole.KV_PREFIX).forEach(x -> x.uninstall("p"));
            float[] plain = model.forward(ModelInput.of(ids, null)).logits().toFloatArray();
            assertTrue(maxDiff(plain, viaSite) > 1e-4);
        }
    }

    @Test
    void sitesRefuseTheWrongKindAndDuplicateOwners() {
        try (TransformerModel model = TinyModels.llama()) {
            HookSite ffn = model.site(SiteRole.FFN_OUTPUT, 0);
            assertThrows(PeftException.class, () -> ffn.installPrefix("a", h -> null));
            assertThrows(PeftException.class, () -> model.site(SiteRole.KV_PREFIX, 0).install("a", (i, o, r) -> o));
            ffn.install("a", (i, o, r) -> o);
            PeftException e = assertThrows(PeftException.class, () -> ffn.install("a", (i, o, r) -> o));
            assertTrue(e.getMessage().contains("layers.0.ffn_output") && e.getMessage().contains("'a'"), e.getMessage());
        }
    }

    @Test
    void attachingTwiceWithOneConfigLeavesTheConfigUnchanged() {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = PeftModel.wrap(model);
            SiteMethod.Config c = new SiteMethod.Config();
            String before = PeftMethods.toJson(c);
            assertNull(c.taskType());
            Adapter a = peft.addAdapter("a", c);
            Adapter b = peft.addAdapter("b", c);
            assertEquals(before, PeftMethods.toJson(c), "attaching changed the caller's config");
            assertNull(c.taskType());
            assertEquals("CAUSAL_LM", a.config().taskType(), "defaults resolve into the adapter's own copy");
            assertNotEquals(System.identityHashCode(a.config()), System.identityHashCode(b.config()));
            assertTrue(a.config() != c && b.config() != c);
        }
    }

    @Test
    void methodsRegisteredInCodeAreFoundAndReadFromJson() {
        assertTrue(PeftMethods.types().contains(SiteMethod.TYPE));
        PeftConfig c = PeftMethods.parse("{\"peft_type\":\"TEST_SITE\",\"role\":\"ATTENTION_OUTPUT\",\"scale\":0.5}", "test");
        assertEquals(SiteMethod.Config.class, c.getClass());
        assertEquals("ATTENTION_OUTPUT", ((SiteMethod.Config) c).role);
    }

    static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }
}
