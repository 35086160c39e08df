package io.github.peft4j.peft;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.data.Example;
import io.github.peft4j.model.SiteRole;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.testing.TinyModels;
import io.github.peft4j.train.Optimizer;
import io.github.peft4j.train.PeftTrainer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Methods at hook sites keep working inside recomputed blocks: with gradient checkpointing a site method's trainable
 * weights (every attention-output and FFN-parallel site) get the plain step's gradients, model-agnostically, on Llama,
 * GPT-2 and BERT; and the sites are called once per block in the forward pass and once more per block in backward
 * (the recomputation), which shows the checkpointed path ran.
 */
class CheckpointedSitesTest {
    @BeforeAll
    static void register() {
        PeftMethods.register(new SiteMethod());
    }

    /** Records every trainable gradient; updates nothing. */
    private static final class Capture implements Optimizer {
        final Map<String, float[]> grads = new TreeMap<>();

        @Override
        public void update(Map<String, Param> params, double lr) {
            params.forEach((k, p) -> {
                NDArray g = JniUtils.getGradient((PtNDArray) p.array());
                if (g != null) {
                    grads.put(k, g.toFloatArray());
                    g.close();
                }
            });
        }

        @Override
        public Map<String, NDArray> state() {
            return Map.of();
        }

        @Override
        public void loadState(Map<String, NDArray> state) {}

        @Override
        public long steps() {
            return 0;
        }

        @Override
        public void close() {}
    }

    private static TransformerModel tiny(String arch) {
        return switch (arch) {
            case "gpt2" -> TinyModels.gpt2();
            case "bert" -> TinyModels.bert(TaskType.SEQ_CLS);
            default -> TinyModels.llama();
        };
    }

    private static List<Example> data(String arch) {
        Random r = new Random(5);
        List<Example> out = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            int[] ids = new int[6 + i];
            for (int j = 0; j < ids.length; j++) {
                ids[j] = 1 + r.nextInt(127);
            }
            out.add(arch.equals("bert") ? Example.classified(ids, i % 3) : Example.tokens(ids));
        }
        return out;
    }

    /** One step's gradients and the number of site calls. */
    private static Map<String, float[]> step(String arch, boolean checkpoint, int[] calls) {
        try (TransformerModel model = tiny(arch); Capture capture = new Capture()) {
            PeftModel peft = PeftModel.wrap(model);
            for (SiteRole role : List.of(SiteRole.ATTENTION_OUTPUT, SiteRole.FFN_PARALLEL)) {
                SiteMethod.Config c = new SiteMethod.Config();
                c.role = role.name();
                peft.addAdapter(role.name().toLowerCase(java.util.Locale.ROOT), c);
            }
            peft.setActive("attention_output", "ffn_parallel");
            for (int i = 0; i < model.numLayers(); i++) {
                model.site(SiteRole.FFN_OUTPUT, i).install("count", (in, out, residual) -> {
                    calls[0]++;
                    return out;
                });
            }
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data(arch)).optOptimizer(capture)
                    .optMaxSteps(1).optBatchSize(4).optShuffle(false).optMaxGradNorm(0).optGradientCheckpointing(checkpoint)
                    .build()) {
                t.train();
            }
            return capture.grads;
        }
    }

    @Test
    void siteMethodsGetThePlainGradientsInsideRecomputedBlocks() {
        for (String arch : List.of("llama", "gpt2", "bert")) {
            int[] plainCalls = {0};
            int[] ckptCalls = {0};
            Map<String, float[]> plain = step(arch, false, plainCalls);
            Map<String, float[]> ckpt = step(arch, true, ckptCalls);
            assertEquals(2, plainCalls[0], arch + ": one call per block");
            assertEquals(4, ckptCalls[0], arch + ": forward and recomputation");
            assertEquals(plain.keySet(), ckpt.keySet(), arch);
            long siteTensors = plain.keySet().stream().filter(k -> k.contains("layers.")).count();
            assertEquals(4, siteTensors, arch + ": " + plain.keySet()); // 2 roles x 2 layers
            double worst = 0;
            for (String k : plain.keySet()) {
                float[] a = plain.get(k);
                float[] b = ckpt.get(k);
                double norm = 0;
                for (int i = 0; i < a.length; i++) {
                    worst = Math.max(worst, Math.abs(a[i] - b[i]));
                    norm = Math.max(norm, Math.abs(a[i]));
                }
                assertTrue(norm > 0, arch + ": zero gradient for " + k);
            }
            System.out.printf("gradient checkpointing site methods %s: %d tensors, max|diff| = %.2e%n", arch,
                    plain.size(), worst);
            assertTrue(worst <= 1e-6, arch + ": max|diff| " + worst);
        }
    }
}
