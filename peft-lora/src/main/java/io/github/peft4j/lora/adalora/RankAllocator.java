package io.github.peft4j.lora.adalora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.github.peft4j.PeftException;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdaLoRA's rank allocator for one adapter (HF PEFT 0.21 {@code RankAllocator} and
 * {@code AdaLoraModel.update_and_allocate}), called after every optimizer step with the step number (1-based).
 *
 * <ul>
 *   <li>Importance per element of A, E, B: {@code I = |p ⊙ ∇p|} (the parameters after the step, the gradients of
 *       the step), sensitivity {@code Ī ← β1 Ī + (1 − β1) I}, uncertainty {@code U ← β2 U + (1 − β2) |I − Ī|}, score
 *       {@code Ī ⊙ U}; updated while {@code step < total_step − tfinal}.</li>
 *   <li>Triplet score of rank i of a module: {@code S(E_i) + (mean_j S(A_ij) + mean_k S(B_ki))}.</li>
 *   <li>Budget: {@code Σ init_r} up to {@code tinit}; then
 *       {@code int((init − target)·(1 − (t − tinit)/(T − tfinal − tinit))³ + target)}, masking when
 *       {@code t % deltaT == 0}; at {@code t = T − tfinal} a final mask at the target {@code target_r × modules}
 *       (the scores are then reset); after that the final mask is applied again after every step.</li>
 *   <li>Masking zeroes {@code lora_E} where the triplet score is at or below the k-th smallest of all scores,
 *       {@code k = Σ init_r − budget} (ties are all masked, as HF's {@code <=}); the mask is the rank pattern.</li>
 * </ul>
 * With {@code k <= 0} (init_r equal to target_r) nothing is masked where HF's {@code kthvalue} would fail.
 */
final class RankAllocator {
    private final AdaLoraConfig config;
    private final String adapter;
    private final Map<String, AdaLoraLayer> layers;
    private final long initBudget;
    private final long targetBudget;
    /** Sensitivity and uncertainty EMAs by parameter ("path/A", "path/E", "path/B"). */
    private final Map<String, NDArray> ipt = new HashMap<>();
    private final Map<String, NDArray> unc = new HashMap<>();
    private final NDManager manager;

    RankAllocator(AdaLoraConfig config, String adapter, Map<String, AdaLoraLayer> layers, NDManager manager) {
        this.config = config;
        this.adapter = adapter;
        this.layers = layers;
        this.manager = manager;
        long init = 0;
        for (AdaLoraLayer l : layers.values()) {
            init += l.svd(adapter).rank();
        }
        this.initBudget = init;
        this.targetBudget = (long) config.targetR() * layers.size();
    }

    /** @return {@code init_bgt}: the sum of the modules' ranks when the allocator was made */
    long initBudget() {
        return initBudget;
    }

    /** @return {@code target_bgt}: {@code target_r} times the number of modules */
    long targetBudget() {
        return targetBudget;
    }

    /** The budget of a step and whether it masks (HF's {@code budget_schedule}). */
    record Budget(long budget, boolean mask) {}

    Budget schedule(long step) {
        long tinit = config.tinit();
        long tfinal = config.tfinal();
        long total = config.totalStep();
        if (step <= tinit) {
            return new Budget(initBudget, false);
        }
        if (step > total - tfinal) {
            return new Budget(targetBudget, true);
        }
        double mul = 1 - (double) (step - tinit) / (total - tfinal - tinit);
        long budget = (long) ((initBudget - targetBudget) * Math.pow(mul, 3) + targetBudget);
        return new Budget(budget, step % config.deltaT() == 0);
    }

    /**
     * One call of HF's {@code update_and_allocate(step)}.
     *
     * @param step the optimizer step just taken (1-based)
     * @param current the current rank pattern (path to kept flags), or null
     * @return the new rank pattern when this step masked, else {@code current}
     */
    Map<String, boolean[]> step(long step, Map<String, boolean[]> current) {
        long last = config.totalStep() - config.tfinal();
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            if (step < last) {
                updateImportance();
                Budget b = schedule(step);
                return b.mask() ? mask(b.budget()) : current;
            }
            if (step == last) {
                Map<String, boolean[]> pattern = mask(schedule(step).budget());
                reset();
                return pattern;
            }
            if (current != null) {
                apply(current);
            }
            return current;
        } finally {
            JniUtils.setGradMode(grad);
        }
    }

    private void updateImportance() {
        layers.forEach((path, layer) -> {
            AdaLoraLayer.Svd s = layer.svd(adapter);
            update(path + "/A", s.a);
            update(path + "/E", s.e);
            update(path + "/B", s.b);
        });
    }

    private void update(String key, Param p) {
        NDArray w = p.array();
        NDArray g = JniUtils.getGradient((PtNDArray) w);
        NDArray i = g == null ? w.zerosLike() : w.mul(g).abs();
        NDArray avg = ipt.computeIfAbsent(key, k -> persistent(w.zerosLike()));
        NDArray un = unc.computeIfAbsent(key, k -> persistent(w.zerosLike()));
        double b1 = config.beta1();
        double b2 = config.beta2();
        // HF: exp_avg_ipt = beta1 * exp_avg_ipt + (1 - beta1) * ipt;
        //     exp_avg_unc = beta2 * exp_avg_unc + (1 - beta2) * (ipt - exp_avg_ipt).abs()
        avg.muli(Ops.scalar(avg, b1)).addi(i.mul(Ops.scalar(i, 1 - b1)));
        un.muli(Ops.scalar(un, b2)).addi(i.sub(avg).abs().mul(Ops.scalar(i, 1 - b2)));
    }

    private NDArray persistent(NDArray a) {
        NDScope.unregister(a);
        a.attach(manager);
        return a;
    }

    /** The element scores {@code Ī ⊙ U} of a parameter (zeros before its first update). */
    private NDArray score(String key, Param p) {
        NDArray avg = ipt.get(key);
        NDArray un = unc.get(key);
        return avg == null || un == null ? p.array().zerosLike() : avg.mul(un);
    }

    /** HF's {@code mask_to_budget}: zero the least important triplets' E, return the pattern. */
    private Map<String, boolean[]> mask(long budget) {
        Map<String, float[]> triplet = new LinkedHashMap<>();
        int count = 0;
        for (Map.Entry<String, AdaLoraLayer> en : layers.entrySet()) {
            String path = en.getKey();
            AdaLoraLayer.Svd s = en.getValue().svd(adapter);
            NDArray a = score(path + "/A", s.a).mean(new int[] {1}, true); // (r, 1)
            NDArray b = score(path + "/B", s.b).mean(new int[] {0}).reshape(-1, 1); // (r, 1)
            NDArray e = score(path + "/E", s.e).reshape(-1);
            NDArray sum = e.add(a.add(b).reshape(-1)); // HF: ipt_E.view(-1) + cat([A, B], 1).sum(1)
            float[] v = sum.toFloatArray();
            triplet.put(path, v);
            count += v.length;
        }
        long k = initBudget - budget;
        float[] all = new float[count];
        int at = 0;
        for (float[] v : triplet.values()) {
            System.arraycopy(v, 0, all, at, v.length);
            at += v.length;
        }
        Arrays.sort(all);
        double threshold = k <= 0 || all.length == 0 ? Double.NEGATIVE_INFINITY : all[(int) Math.min(k, all.length) - 1];
        Map<String, boolean[]> pattern = new LinkedHashMap<>();
        triplet.forEach((path, v) -> {
            boolean[] keep = new boolean[v.length];
            for (int i = 0; i < v.length; i++) {
                keep[i] = !(v[i] <= threshold);
            }
            pattern.put(path, keep);
        });
        apply(pattern);
        return pattern;
    }

    /** HF's {@code mask_using_rank_pattern}: zero E where the pattern drops a rank (layers at another rank are skipped). */
    void apply(Map<String, boolean[]> pattern) {
        pattern.forEach((path, keep) -> {
            AdaLoraLayer layer = layers.get(path);
            if (layer == null) {
                return;
            }
            NDArray e = layer.svd(adapter).e.array();
            if (e.getShape().get(0) != keep.length) {
                return;
            }
            float[] m = new float[keep.length];
            for (int i = 0; i < m.length; i++) {
                m[i] = keep[i] ? 1f : 0f;
            }
            try (NDArray mk = Ops.owned(e.getManager(), m, new ai.djl.ndarray.types.Shape(keep.length, 1))) {
                e.muli(mk);
            }
        });
    }

    /**
     * The importance averages, for a trainer checkpoint: {@code <path>.lora_A.exp_avg_ipt} and
     * {@code <path>.lora_A.exp_avg_unc} (likewise {@code lora_E}, {@code lora_B}) for every parameter scored so far
     * (none before the first step and after the final mask's reset, as HF's {@code ipt} dictionaries).
     *
     * @return name to array (the allocator's own arrays)
     */
    Map<String, NDArray> state() {
        Map<String, NDArray> out = new java.util.TreeMap<>();
        ipt.forEach((k, v) -> out.put(stateName(k, "exp_avg_ipt"), v));
        unc.forEach((k, v) -> out.put(stateName(k, "exp_avg_unc"), v));
        return out;
    }

    /**
     * Replaces the importance averages with saved ones ({@link #state}'s names).
     *
     * @param saved name to array
     * @param source for messages
     */
    void load(Map<String, NDArray> saved, String source) {
        reset();
        for (Map.Entry<String, NDArray> e : saved.entrySet()) {
            String name = e.getKey();
            String[] parts = name.split("\\.(?=lora_[AEB]\\.exp_avg_(ipt|unc)$)");
            String[] tail = parts.length == 2 ? parts[1].split("\\.") : null;
            AdaLoraLayer layer = parts.length == 2 ? layers.get(parts[0]) : null;
            if (layer == null) {
                throw new PeftException(source + ": AdaLoRA state '" + name + "' names no module of adapter '" + adapter
                        + "'; expected '<module path>.lora_A|lora_E|lora_B.exp_avg_ipt|exp_avg_unc' for one of " + layers.keySet());
            }
            AdaLoraLayer.Svd s = layer.svd(adapter);
            Param p = switch (tail[0]) {
                case "lora_A" -> s.a;
                case "lora_E" -> s.e;
                default -> s.b;
            };
            if (!e.getValue().getShape().equals(p.shape())) {
                throw new PeftException(source + ": AdaLoRA state '" + name + "' has shape " + e.getValue().getShape()
                        + ", the parameter " + p.shape());
            }
            String key = parts[0] + "/" + tail[0].substring("lora_".length());
            NDArray copy = Ops.ownedCopy(e.getValue(), manager, ai.djl.ndarray.types.DataType.FLOAT32);
            ("exp_avg_ipt".equals(tail[1]) ? ipt : unc).put(key, copy);
        }
    }

    /** {@code "path/A"} and a field to {@code path.lora_A.field}. */
    private static String stateName(String key, String field) {
        int slash = key.lastIndexOf('/');
        return key.substring(0, slash) + ".lora_" + key.substring(slash + 1) + "." + field;
    }

    /** HF's {@code reset_ipt}. */
    void reset() {
        ipt.values().forEach(NDArray::close);
        unc.values().forEach(NDArray::close);
        ipt.clear();
        unc.clear();
    }

    /** @return the paths the allocator scores, in model order */
    List<String> paths() {
        return List.copyOf(layers.keySet());
    }
}
