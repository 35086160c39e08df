package io.github.peft4j.lora.combine;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.ModuleSpec;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.WeightedCombiner;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * HF PEFT 0.21's {@code LoraModel.add_weighted_adapter} for peft4j's LoRA adapters (plain LoRA on Linear, Conv1D and
 * embedding layers). The new config is the first source's with {@code r = lora_alpha = new rank}, the union of the
 * sources' {@code target_modules} (regexes joined as {@code (a)|(b)}) and no rank/alpha patterns, so the new adapter's
 * scaling is 1 (or {@code sqrt(r)} when the first source uses rsLoRA, as in HF). Then, on every layer of the new
 * adapter, from the sources present there (in the given order):
 * <ul>
 *   <li>{@code linear, ties, dare_linear, dare_ties, magnitude_prune}: {@code A} and {@code B} are merged separately
 *       with weights {@code sign(w s)·sqrt(|w s|)} on A and {@code sqrt(|w s|)} on B ({@code s} the source's scaling);
 *       all sources must have the new rank;</li>
 *   <li>{@code cat}: {@code A = [w_1 s_1 A_1; w_2 s_2 A_2; …]}, {@code B = [B_1 | B_2 | …]}, zero-padded to the new
 *       rank (sum of the sources' ranks) where a source is absent;</li>
 *   <li>{@code *svd}: the updates {@code ΔW_i = s_i B_i A_i} (the embedding's taken as {@code (dim, vocab)}) are
 *       merged, then {@code B = U_k S_k}, {@code A = V_kᵀ} ({@link TruncatedSvd}), optionally clamped.</li>
 * </ul>
 */
final class LoraCombiner implements WeightedCombiner {
    @Override
    public LoraConfig combinedConfig(List<Adapter> sources, Spec spec) {
        Combination c = effective(spec, sources);
        List<LoraConfig> configs = configs(sources);
        List<Integer> ranks = new ArrayList<>();
        for (LoraConfig cfg : configs) {
            int r = cfg.r();
            for (int v : cfg.rankPattern().values()) {
                r = Math.max(r, v);
            }
            ranks.add(r);
        }
        int newRank = switch (c.combinationType().kind) {
            case FACTORS -> {
                if (new LinkedHashSet<>(ranks).size() != 1) {
                    throw new PeftException("combination " + c.type() + ": all adapters must have the same r (HF's rule for"
                            + " linear, ties, dare_linear, dare_ties and magnitude_prune); got " + names(sources) + " with r "
                            + ranks + "; use cat or an *svd type");
                }
                yield ranks.get(0);
            }
            case CAT -> ranks.stream().mapToInt(Integer::intValue).sum();
            case DENSE -> c.svdRank() != null ? c.svdRank() : ranks.stream().mapToInt(Integer::intValue).max().orElseThrow();
        };
        LoraConfig out = PeftMethods.copy(configs.get(0));
        out.r(newRank).loraAlpha(newRank).rankPattern(Map.of()).alphaPattern(Map.of());
        out.targetModules(unionTargets(sources, configs));
        return out;
    }

    @Override
    public void combineInto(Adapter target, List<Adapter> sources, double[] weights, Spec spec) {
        Combination c = effective(spec, sources);
        CombinationType type = c.combinationType();
        double density = TaskMerges.checkDensity(type, c.density());
        List<LoraConfig> configs = configs(sources);
        SplittableRandom random = new SplittableRandom(c.seed());
        LayerAdapter t = (LayerAdapter) target;
        for (Map.Entry<String, AdapterLayer> e : t.layers().entrySet()) {
            String path = e.getKey();
            AdapterLayer layer = e.getValue();
            List<Factor> present = new ArrayList<>();
            List<Double> w = new ArrayList<>();
            for (int i = 0; i < sources.size(); i++) {
                if (layer.adapterNames().contains(sources.get(i).name())) {
                    present.add(factor(layer, sources.get(i).name(), configs.get(i).scalingFor(path), path));
                    w.add(weights[i]);
                }
            }
            if (present.isEmpty()) { // HF: "No matching LoRAs found"
                throw new PeftException("combination " + c.type() + ": no source adapter of " + names(sources)
                        + " is on layer '" + path + "', which the combined config targets");
            }
            Factor dst = factor(layer, target.name(), 1, path);
            double[][] ab = switch (type.kind) {
                case FACTORS -> factors(type, present, w, density, c.majoritySign(), random, dst, path);
                case CAT -> cat(present, w, dst);
                case DENSE -> svd(c, present, w, density, random, dst);
            };
            write(dst.a, ab[0]);
            write(dst.b, ab[1]);
        }
    }

    /** HF: a single source is always combined linearly. */
    private static Combination effective(Spec spec, List<Adapter> sources) {
        if (!(spec instanceof Combination c)) {
            throw new PeftException("LoRA combinations take an io.github.peft4j.lora.combine.Combination, got "
                    + (spec == null ? "null" : spec.getClass().getName()));
        }
        return sources.size() == 1 ? c.withType(CombinationType.LINEAR) : c;
    }

    private static List<LoraConfig> configs(List<Adapter> sources) {
        List<LoraConfig> out = new ArrayList<>();
        Map<String, String> savedBy = new HashMap<>();
        for (Adapter a : sources) {
            LoraConfig cfg = (LoraConfig) a.config();
            if (cfg.useDora()) {
                throw new PeftException("combination: adapter '" + a.name() + "' uses DoRA (use_dora); peft4j combines plain"
                        + " LoRA adapters only (HF would keep the new adapter's magnitude at its initial value)");
            }
            if (cfg.modulesToSave() != null) {
                for (String m : cfg.modulesToSave()) {
                    String other = savedBy.put(m, a.name());
                    if (other != null) {
                        throw new PeftException("combination: adapters '" + other + "' and '" + a.name() + "' both have"
                                + " modules_to_save '" + m + "'; HF PEFT cannot combine adapters that save the same module");
                    }
                }
            }
            out.add(cfg);
        }
        return out;
    }

    /** HF's {@code new_target_modules}: the union of the lists, or the regexes joined as {@code (r1)|(r2)}. */
    private static ModuleSpec unionTargets(List<Adapter> sources, List<LoraConfig> configs) {
        boolean regex = configs.get(0).targetModules().isRegex();
        for (int i = 0; i < configs.size(); i++) {
            if (configs.get(i).targetModules().isRegex() != regex) {
                throw new PeftException("combination: adapter '" + sources.get(i).name() + "' gives target_modules as a "
                        + (regex ? "list" : "regex") + ", adapter '" + sources.get(0).name() + "' as a " + (regex ? "regex" : "list")
                        + "; HF PEFT combines only adapters whose target_modules are all lists or all regexes");
            }
        }
        if (regex) {
            List<String> parts = new ArrayList<>();
            configs.forEach(cfg -> parts.add("(" + cfg.targetModules().toJson() + ")"));
            return ModuleSpec.regex(String.join("|", parts));
        }
        Set<String> names = new LinkedHashSet<>();
        configs.forEach(cfg -> names.addAll(cfg.targetModules().nameList()));
        return ModuleSpec.names(new ArrayList<>(names));
    }

    /** One adapter's factors on a layer: {@code A (r, in)}, {@code B (out, r)}, its scaling. */
    private record Factor(Param a, Param b, int r, int in, int out, double scaling) {
        double[] aValues() {
            return doubles(a.array());
        }

        double[] bValues() {
            return doubles(b.array());
        }
    }

    private static Factor factor(AdapterLayer layer, String adapter, double scaling, String path) {
        Param a = null;
        Param b = null;
        for (Map.Entry<String, Param> p : layer.adapterParameters(adapter).entrySet()) {
            String local = p.getKey();
            if (local.startsWith("lora_A.") || local.startsWith("lora_embedding_A.")) {
                a = p.getValue();
            } else if (local.startsWith("lora_B.") || local.startsWith("lora_embedding_B.")) {
                b = p.getValue();
            }
        }
        if (a == null || b == null) {
            throw new PeftException("combination: layer '" + path + "' has no lora_A/lora_B of adapter '" + adapter + "'");
        }
        Shape sa = a.array().getShape();
        Shape sb = b.array().getShape();
        return new Factor(a, b, (int) sa.get(0), (int) sa.get(1), (int) sb.get(0), scaling);
    }

    private static double[][] factors(CombinationType type, List<Factor> src, List<Double> w, double density,
            Combination.MajoritySign sign, SplittableRandom random, Factor dst, String path) {
        double[] wa = new double[src.size()];
        double[] wb = new double[src.size()];
        List<double[]> as = new ArrayList<>();
        List<double[]> bs = new ArrayList<>();
        for (int i = 0; i < src.size(); i++) {
            Factor f = src.get(i);
            if (f.r != dst.r) {
                throw new PeftException("combination " + type.hfName() + ": on layer '" + path + "' a source has rank " + f.r
                        + ", the combined adapter " + dst.r + "; linear-family types need equal ranks on every layer");
            }
            double ws = w.get(i) * f.scaling;
            double root = Math.sqrt(Math.abs(ws));
            wa[i] = ws >= 0 ? root : -root; // the sign goes on A only, or it would cancel
            wb[i] = root;
            as.add(f.aValues());
            bs.add(f.bValues());
        }
        return new double[][] {TaskMerges.merge(type, as, wa, density, sign, random),
            TaskMerges.merge(type, bs, wb, density, sign, random)};
    }

    private static double[][] cat(List<Factor> src, List<Double> w, Factor dst) {
        double[] a = new double[dst.r * dst.in];
        double[] b = new double[dst.out * dst.r];
        int row = 0;
        for (int i = 0; i < src.size(); i++) {
            Factor f = src.get(i);
            double k = w.get(i) * f.scaling;
            double[] fa = f.aValues();
            double[] fb = f.bValues();
            for (int j = 0; j < fa.length; j++) {
                a[row * dst.in + j] = fa[j] * k;
            }
            for (int o = 0; o < dst.out; o++) {
                for (int j = 0; j < f.r; j++) {
                    b[o * dst.r + row + j] = fb[o * f.r + j];
                }
            }
            row += f.r;
        }
        return new double[][] {a, b};
    }

    private static double[][] svd(Combination c, List<Factor> src, List<Double> w, double density, SplittableRandom random,
            Factor dst) {
        CombinationType type = c.combinationType();
        int out = dst.out;
        int in = dst.in;
        TruncatedSvd.Factors f;
        if (type == CombinationType.SVD) { // Σ w_i s_i B_i A_i = [w_i s_i B_i] [A_i]: low rank, never formed
            int r = src.stream().mapToInt(Factor::r).sum();
            double[] bc = new double[out * r];
            double[] ac = new double[r * in];
            int col = 0;
            for (int i = 0; i < src.size(); i++) {
                Factor s = src.get(i);
                double k = w.get(i) * s.scaling;
                double[] sb = s.bValues();
                for (int o = 0; o < out; o++) {
                    for (int j = 0; j < s.r; j++) {
                        bc[o * r + col + j] = sb[o * s.r + j] * k;
                    }
                }
                System.arraycopy(s.aValues(), 0, ac, col * in, s.r * in);
                col += s.r;
            }
            f = TruncatedSvd.ofProduct(bc, ac, out, in, r, dst.r);
        } else { // pruning acts entry-wise on the dense updates: full rank
            List<double[]> deltas = new ArrayList<>();
            for (Factor s : src) {
                deltas.add(dense(s));
            }
            double[] weights = w.stream().mapToDouble(Double::doubleValue).toArray();
            double[] merged = TaskMerges.merge(type, deltas, weights, density, c.majoritySign(), random);
            f = TruncatedSvd.ofDense(merged, out, in, dst.r);
        }
        if (c.svdClamp() != null) {
            f = TruncatedSvd.clamp(f, c.svdClamp());
        }
        return new double[][] {f.a(), f.b()};
    }

    /** {@code s · B A} {@code (out, in)} row-major. */
    private static double[] dense(Factor f) {
        double[] a = f.aValues();
        double[] b = f.bValues();
        double[] d = new double[f.out * f.in];
        for (int o = 0; o < f.out; o++) {
            for (int j = 0; j < f.r; j++) {
                double v = b[o * f.r + j] * f.scaling;
                if (v == 0) {
                    continue;
                }
                int ao = j * f.in;
                int dof = o * f.in;
                for (int i = 0; i < f.in; i++) {
                    d[dof + i] += v * a[ao + i];
                }
            }
        }
        return d;
    }

    private static double[] doubles(NDArray x) {
        float[] f = float32(x).toFloatArray();
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /** LoRA's factors are float32 leaves (the forward casts them to the compute dtype). */
    private static NDArray float32(NDArray x) {
        if (x.getDataType() != DataType.FLOAT32) {
            throw new PeftException("combination: a LoRA factor is " + x.getDataType() + ", expected float32");
        }
        return x;
    }

    /** Copies values into a float32 parameter in place (on its device). */
    private static void write(Param p, double[] values) {
        NDArray dst = float32(p.array());
        float[] f = new float[values.length];
        for (int i = 0; i < f.length; i++) {
            f[i] = (float) values[i];
        }
        try (NDArray v = dst.getManager().create(f, dst.getShape())) {
            v.copyTo(dst);
        }
    }

    private static List<String> names(List<Adapter> sources) {
        return sources.stream().map(Adapter::name).toList();
    }
}
