package io.github.peft4j.lora.combine;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

/**
 * The random (dare) combinations, which cannot equal HF's torch draws: their statistics (kept fraction ≈ density,
 * kept values rescaled by exactly 1/density, the mean over seeds → the linear combination), seeded reproducibility,
 * and density 1 reducing them to linear / ties exactly; plus the errors of bad combinations.
 */
class CombineTest {
    private static final List<String> AB = List.of("a", "b");
    private static final double[] W = {0.8, -0.5};

    @Test
    void randomPruningKeepsDensityAndRescales() {
        int n = 200_000;
        double density = 0.3;
        double[] t = new double[n];
        SplittableRandom values = new SplittableRandom(7);
        for (int i = 0; i < n; i++) {
            t[i] = values.nextDouble(0.5, 1.5);
        }
        double[] p = TaskMerges.randomPrune(t, density, new SplittableRandom(1));
        int kept = 0;
        double worstRescale = 0;
        for (int i = 0; i < n; i++) {
            if (p[i] != 0) {
                kept++;
                worstRescale = Math.max(worstRescale, Math.abs(p[i] - t[i] / density));
            }
        }
        double fraction = kept / (double) n;
        double sigma = Math.sqrt(density * (1 - density) / n);
        System.out.printf("dare: kept fraction %.5f (density %.2f, 4 sigma %.5f), rescale max|diff| %.1e%n", fraction,
                density, 4 * sigma, worstRescale);
        assertEquals(density, fraction, 4 * sigma);
        assertEquals(0, worstRescale, 1e-12);
        assertArrayEquals(p, TaskMerges.randomPrune(t, density, new SplittableRandom(1)));
        assertArrayEquals(t, TaskMerges.randomPrune(t, 1.0, new SplittableRandom(1))); // density >= 1: as HF, unpruned
    }

    @Test
    void magnitudePruningKeepsTheLargestIntDensityTimesN() {
        double[] t = {0.1, -0.9, 0.5, -0.3, 0.7, 0.05, -0.6, 0.2, 0.0, 0.4};
        double[] p = TaskMerges.magnitudePrune(t, 0.35); // int(3.5) = 3: -0.9, 0.7, -0.6
        assertArrayEquals(new double[] {0, -0.9, 0, 0, 0.7, 0, -0.6, 0, 0, 0}, p);
    }

    @Test
    void tiesElectsTheSignOfTheUnweightedSum() {
        List<double[]> t = List.of(new double[] {1.0, -2.0, 0.0}, new double[] {-3.0, 1.0, 0.0});
        double[] w = {2.0, 0.5};
        // entry 0: sum -2 -> majority -, only t2 agrees: 0.5 * -3 / 1; entry 1: sum -1 -> -, t1: 2 * -2 / 1; entry 2: 0
        assertArrayEquals(new double[] {-1.5, -4.0, 0.0}, TaskMerges.disjointMerge(t, w, Combination.MajoritySign.TOTAL));
        // frequency: entry 0 signs +,- -> 0 >= 0 -> +: t1 only: 2 * 1
        assertArrayEquals(new double[] {2.0, 0.5, 0.0}, TaskMerges.disjointMerge(t, w, Combination.MajoritySign.FREQUENCY));
    }

    private static Map<String, float[]> combine(PeftModel peft, String name, Combination c) {
        peft.addWeightedAdapter(name, AB, W, c);
        Map<String, float[]> out = new TreeMap<>();
        peft.stateDict(name).forEach((k, v) -> out.put(k, v.toFloatArray()));
        peft.deleteAdapter(name);
        return out;
    }

    /** Each layer's update {@code B A} (SVD factors are unique only up to signs; their product is unique). */
    private static Map<String, float[]> updates(PeftModel peft, Combination c) {
        peft.addWeightedAdapter("x", AB, W, c);
        Map<String, float[]> out = new TreeMap<>();
        Map<String, ai.djl.ndarray.NDArray> sd = peft.stateDict("x");
        sd.forEach((k, a) -> {
            String b = k.endsWith("lora_A.weight") ? k.replace("lora_A.weight", "lora_B.weight")
                    : k.endsWith("lora_embedding_A") ? k.replace("lora_embedding_A", "lora_embedding_B") : null;
            if (b != null) {
                out.put(k, sd.get(b).matMul(a).toFloatArray());
            }
        });
        peft.deleteAdapter("x");
        return out;
    }

    private static TransformerModel base() {
        return Models.load(Fixtures.dir("llama_lora").resolve("base"));
    }

    @Test
    void dareIsSeededAndDensityOneIsDeterministic() throws IOException {
        try (TransformerModel base = base()) {
            PeftModel peft = CombineParityTest.withSources(base, CombineParityTest.fixture("llama_combine"));
            for (CombinationType t : List.of(CombinationType.DARE_LINEAR, CombinationType.DARE_TIES,
                    CombinationType.DARE_LINEAR_SVD, CombinationType.DARE_TIES_SVD)) {
                Combination c = Combination.of(t).density(0.5).seed(11);
                Map<String, float[]> first = combine(peft, "x", c);
                Map<String, float[]> again = combine(peft, "x", c);
                Map<String, float[]> other = combine(peft, "x", c.seed(12));
                first.forEach((k, v) -> assertArrayEquals(v, again.get(k), t + " " + k + " with the same seed"));
                String aKey = first.keySet().stream().filter(k -> k.contains("q_proj.lora_A")).findFirst().orElseThrow();
                assertNotEquals(java.util.Arrays.toString(first.get(aKey)), java.util.Arrays.toString(other.get(aKey)),
                        t + ": another seed, other masks");
            }
            // density 1 prunes nothing (HF: a warning and the tensor unchanged), so dare = its deterministic twin
            Map<CombinationType, CombinationType> twins = Map.of(CombinationType.DARE_LINEAR, CombinationType.LINEAR,
                    CombinationType.DARE_TIES, CombinationType.TIES, CombinationType.DARE_LINEAR_SVD, CombinationType.SVD,
                    CombinationType.DARE_TIES_SVD, CombinationType.TIES_SVD);
            for (Map.Entry<CombinationType, CombinationType> e : twins.entrySet()) {
                Map<String, float[]> dare = updates(peft, Combination.of(e.getKey()).density(1.0));
                Map<String, float[]> twin = updates(peft, Combination.of(e.getValue()).density(1.0));
                double worst = 0;
                for (String k : dare.keySet()) {
                    for (int i = 0; i < dare.get(k).length; i++) {
                        worst = Math.max(worst, Math.abs(dare.get(k)[i] - twin.get(k)[i]));
                    }
                }
                assertTrue(worst < 1e-5, e + ": max|diff| " + worst);
            }
        }
    }

    /** E[dare_linear] = linear: averaged over seeds, the factors converge to the linear combination's. */
    @Test
    void dareLinearIsUnbiased() throws IOException {
        try (TransformerModel base = base()) {
            PeftModel peft = CombineParityTest.withSources(base, CombineParityTest.fixture("llama_combine"));
            Map<String, float[]> linear = combine(peft, "x", Combination.of(CombinationType.LINEAR));
            String key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
            int seeds = 200;
            double[] mean = new double[linear.get(key).length];
            for (int s = 0; s < seeds; s++) {
                float[] v = combine(peft, "x", Combination.of(CombinationType.DARE_LINEAR).density(0.5).seed(s)).get(key);
                for (int i = 0; i < mean.length; i++) {
                    mean[i] += v[i] / (double) seeds;
                }
            }
            double err = 0;
            double scale = 0;
            for (int i = 0; i < mean.length; i++) {
                err += (mean[i] - linear.get(key)[i]) * (mean[i] - linear.get(key)[i]);
                scale += linear.get(key)[i] * linear.get(key)[i];
            }
            double rel = Math.sqrt(err / scale);
            System.out.printf("dare_linear: mean of %d seeds vs linear, relative error %.4f (1/sqrt(n) = %.4f)%n", seeds, rel,
                    1 / Math.sqrt(seeds));
            assertTrue(rel < 3 / Math.sqrt(seeds), "relative error " + rel);
        }
    }

    @Test
    void badCombinationsSayWhatIsWrong() throws IOException {
        try (TransformerModel base = base()) {
            PeftModel peft = CombineParityTest.withSources(base, CombineParityTest.fixture("llama_combine"));
            PeftException rank = assertThrows(PeftException.class, () -> peft.addWeightedAdapter("x", List.of("a", "d"),
                    W, Combination.of(CombinationType.LINEAR)));
            assertTrue(rank.getMessage().contains("same r") && rank.getMessage().contains("[4, 2]"), rank.getMessage());
            PeftException count = assertThrows(PeftException.class, () -> peft.addWeightedAdapter("x", AB,
                    new double[] {1}, Combination.of(CombinationType.LINEAR)));
            assertTrue(count.getMessage().contains("one weight per adapter"), count.getMessage());
            PeftException density = assertThrows(PeftException.class, () -> peft.addWeightedAdapter("x", AB, W,
                    Combination.of(CombinationType.TIES)));
            assertTrue(density.getMessage().contains("needs a density"), density.getMessage());
            assertThrows(PeftException.class, () -> peft.addWeightedAdapter("x", List.of("a", "zz"), W,
                    Combination.of(CombinationType.LINEAR)));
            assertEquals(List.of("a", "b", "c", "d"), List.copyOf(peft.adapterNames()), "a failed combination leaves nothing");
            PeftException type = assertThrows(PeftException.class, () -> CombinationType.parse("avg"));
            assertTrue(type.getMessage().contains("dare_ties_svd"), type.getMessage());
        }
    }
}
