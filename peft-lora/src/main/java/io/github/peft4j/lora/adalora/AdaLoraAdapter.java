package io.github.peft4j.lora.adalora;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.AdapterLayer;
import io.github.peft4j.peft.LayerAdapter;
import io.github.peft4j.peft.PeftConfig;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.TrainingHooks;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * An AdaLoRA adapter: its {@link AdaLoraLayer}s, the orthogonal regulariser ({@link #extraLoss}), the rank allocator
 * ({@link #afterStep}) and HF PEFT's file codec: saved tensors are cut to the kept ranks of the rank pattern
 * ({@code lora_A} rows, {@code lora_E} rows, {@code lora_B} columns; a module with no kept rank saves zero-sized
 * tensors such as {@code (0, 64)}), and {@link #configToSave} writes {@code rank_pattern} (keys
 * {@code <module path>.lora_E}, without the adapter name). Loading builds every module at {@code init_r} and then cuts
 * it by the file's {@code rank_pattern}, as HF's {@code resize_modules_by_rank_pattern}; the scale keeps
 * {@code init_r}. In memory, training keeps every module at {@code init_r} with the cut ranks' {@code lora_E} zeroed,
 * as HF does.
 */
public final class AdaLoraAdapter extends LayerAdapter implements TrainingHooks {
    private static final org.slf4j.Logger LOG = org.slf4j.LoggerFactory.getLogger(AdaLoraAdapter.class);
    /** Name suffix of the mask in {@link #trainingState}. */
    private static final String PATTERN_SUFFIX = ".rank_pattern";
    private final AdaLoraConfig config;
    private final Map<String, AdaLoraLayer> svdLayers = new LinkedHashMap<>();
    private final RankAllocator allocator;
    private final NDManager manager;
    /** Module path to kept ranks (HF's {@code rank_pattern}), or null before the first mask. */
    private Map<String, boolean[]> rankPattern;

    /**
     * @param name the adapter name
     * @param config its resolved config
     * @param model the model
     * @param layers module path to wrapper (every one an {@link AdaLoraLayer} holding this adapter)
     */
    public AdaLoraAdapter(String name, AdaLoraConfig config, TransformerModel model, Map<String, AdapterLayer> layers) {
        super(name, config, model, layers, TUNER_PREFIX);
        this.config = config;
        layers.forEach((p, l) -> svdLayers.put(p, (AdaLoraLayer) l));
        this.manager = model.manager().newSubManager();
        this.allocator = new RankAllocator(config, name, Collections.unmodifiableMap(svdLayers), manager);
        if (config.rankPattern() != null) { // a pattern in the config is the adapter's mask from the start
            rankPattern = parsePattern(config.rankPattern(), svdLayers.keySet(), config.initR(), name, "config of adapter '" + name + "'");
            allocator.apply(rankPattern);
        }
    }

    /**
     * @return the current rank pattern: module path to one flag per {@code init_r} rank (true: kept), or null when no
     *     mask has been computed (nor loaded)
     */
    public Map<String, List<Boolean>> rankPattern() {
        if (rankPattern == null) {
            return null;
        }
        Map<String, List<Boolean>> out = new LinkedHashMap<>();
        rankPattern.forEach((p, keep) -> out.put(p, flags(keep)));
        return out;
    }

    /** @return each module's rank now (in memory: {@code init_r} while training, the kept ranks after a load) */
    public Map<String, Integer> ranks() {
        Map<String, Integer> out = new LinkedHashMap<>();
        svdLayers.forEach((p, l) -> out.put(p, l.svd(name()).rank()));
        return out;
    }

    /** @return the budget of a step, as HF's {@code RankAllocator.budget_schedule} (for reports and tests) */
    long budget(long step) {
        return allocator.schedule(step).budget();
    }

    private static List<Boolean> flags(boolean[] keep) {
        List<Boolean> l = new ArrayList<>(keep.length);
        for (boolean k : keep) {
            l.add(k);
        }
        return l;
    }

    /**
     * HF's {@code AdaLoraModel.forward} term: {@code orth_reg_weight · mean(‖A Aᵀ − I‖_F, ‖Bᵀ B − I‖_F)} over every
     * {@code lora_A} and {@code lora_B} of this adapter (a zero-rank module counts in the mean with 0).
     */
    @Override
    public NDArray extraLoss(TrainingStep step) {
        if (config.orthRegWeight() == 0) {
            return null; // HF adds 0 · term: the same loss and gradients
        }
        NDArray sum = null;
        int n = 0;
        for (AdaLoraLayer layer : svdLayers.values()) {
            AdaLoraLayer.Svd s = layer.svd(name());
            n += 2;
            if (s.rank() == 0) {
                continue;
            }
            NDArray a = s.a.array();
            NDArray b = s.b.array();
            NDArray ta = frobeniusFromIdentity(a.matMul(a.transpose()));
            NDArray tb = frobeniusFromIdentity(b.transpose().matMul(b));
            sum = sum == null ? ta.add(tb) : sum.add(ta).add(tb);
        }
        if (sum == null) {
            return null;
        }
        NDArray mean = sum.div(Ops.scalar(sum, n));
        return mean.mul(Ops.scalar(mean, config.orthRegWeight()));
    }

    /** {@code ‖C − I‖_F} for a square {@code C}. */
    private static NDArray frobeniusFromIdentity(NDArray c) {
        int r = (int) c.getShape().get(0);
        NDArray eye = c.getManager().eye(r, r, 0, c.getDataType());
        return c.sub(eye).square().sum().sqrt();
    }

    /** HF adds the regulariser to {@code outputs.loss} whenever a loss is computed, in evaluation too. */
    @Override
    public NDArray evaluationLoss() {
        return extraLoss(null);
    }

    /**
     * For exact resume: the allocator's importance averages ({@code <path>.lora_X.exp_avg_ipt|exp_avg_unc}) and the
     * current mask ({@code <path>.rank_pattern}: one 0/1 per {@code init_r} rank) once one was computed.
     */
    @Override
    public Map<String, NDArray> trainingState() {
        Map<String, NDArray> out = new LinkedHashMap<>(allocator.state());
        if (rankPattern != null) {
            rankPattern.forEach((path, keep) -> {
                float[] v = new float[keep.length];
                for (int i = 0; i < v.length; i++) {
                    v[i] = keep[i] ? 1f : 0f;
                }
                out.put(path + PATTERN_SUFFIX, Ops.owned(manager, v, new ai.djl.ndarray.types.Shape(v.length)));
            });
        }
        return out;
    }

    @Override
    public void loadTrainingState(Map<String, NDArray> state, String source) {
        if (state.isEmpty()) {
            LOG.warn("{}: no AdaLoRA allocator state (a checkpoint from an older peft4j?): the importance averages restart"
                    + " from zero, so the resumed run's masks may differ from an uninterrupted run's", source);
        }
        Map<String, NDArray> averages = new LinkedHashMap<>();
        Map<String, boolean[]> pattern = new LinkedHashMap<>();
        state.forEach((k, v) -> {
            if (k.endsWith(PATTERN_SUFFIX)) {
                String path = k.substring(0, k.length() - PATTERN_SUFFIX.length());
                if (!svdLayers.containsKey(path) || v.getShape().dimension() != 1) {
                    throw new PeftException(source + ": AdaLoRA state '" + k + "' names no module of adapter '" + name()
                            + "' or is not a vector (" + v.getShape() + ")");
                }
                float[] f = v.toFloatArray(); // written as F32
                boolean[] keep = new boolean[f.length];
                for (int i = 0; i < f.length; i++) {
                    keep[i] = f[i] != 0f;
                }
                pattern.put(path, keep);
            } else {
                averages.put(k, v);
            }
        });
        allocator.load(averages, source);
        rankPattern = pattern.isEmpty() ? null : pattern;
    }

    /** The rank allocator, after the optimizer step (HF's {@code update_and_allocate(step)}, step 1-based). */
    @Override
    public void afterStep(TrainingStep step) {
        rankPattern = allocator.step(step.step(), rankPattern);
    }

    @Override
    public PeftConfig configToSave() {
        AdaLoraConfig c = PeftMethods.copy(config);
        Map<String, List<Boolean>> saved = null;
        if (rankPattern != null) {
            saved = new LinkedHashMap<>();
            for (Map.Entry<String, boolean[]> e : rankPattern.entrySet()) {
                saved.put(e.getKey() + ".lora_E", flags(e.getValue()));
            }
        }
        c.rankPattern(saved);
        return c;
    }

    /** HF's {@code resize_state_dict_by_rank_pattern}: tensors at more ranks than the pattern keeps are cut. */
    @Override
    public Map<String, NDArray> stateDict() {
        Map<String, NDArray> out = super.stateDict();
        if (rankPattern == null) {
            return out;
        }
        rankPattern.forEach((path, keep) -> {
            int kept = 0;
            for (boolean k : keep) {
                kept += k ? 1 : 0;
            }
            for (String part : List.of("lora_A", "lora_E", "lora_B")) {
                String key = TUNER_PREFIX + path + "." + part;
                NDArray t = out.get(key);
                int axis = "lora_B".equals(part) ? 1 : 0;
                if (t != null && t.getShape().get(axis) != kept) {
                    out.put(key, cut(t, keep, axis));
                }
            }
        });
        return out;
    }

    /** The kept slices of a tensor along an axis (a new array in the tensor's manager; zero-sized when none is kept). */
    private static NDArray cut(NDArray t, boolean[] keep, int axis) {
        if (keep.length != t.getShape().get(axis)) {
            throw new PeftException("AdaLoRA: rank_pattern has " + keep.length + " entries for a tensor of shape "
                    + t.getShape());
        }
        if (axis == 0) {
            return AdaLoraLayer.keepRows(t, keep);
        }
        try (NDArray rowsFirst = t.stopGradient().transpose().duplicate(); NDArray picked = AdaLoraLayer.keepRows(rowsFirst, keep)) {
            return picked.transpose().duplicate();
        }
    }

    /**
     * Reads {@code rank_pattern}: keys {@code <path>.lora_E} or {@code <path>.lora_E.<adapter>}, one flag per
     * {@code init_r} rank.
     *
     * @param pattern the config's pattern
     * @param paths the adapter's module paths
     * @param initR {@code init_r}
     * @param adapter the adapter name
     * @param source for messages
     * @return module path to flags
     */
    static Map<String, boolean[]> parsePattern(Map<String, List<Boolean>> pattern, java.util.Set<String> paths, int initR,
            String adapter, String source) {
        Map<String, boolean[]> byPath = new LinkedHashMap<>();
        for (Map.Entry<String, List<Boolean>> e : pattern.entrySet()) {
            String key = e.getKey();
            String withName = ".lora_E." + adapter;
            String path = key.endsWith(withName) ? key.substring(0, key.length() - withName.length())
                    : key.endsWith(".lora_E") ? key.substring(0, key.length() - ".lora_E".length()) : null;
            if (path == null || !paths.contains(path)) {
                throw new PeftException(source + ": rank_pattern key '" + key + "' names no AdaLoRA module of this adapter;"
                        + " expected '<module path>.lora_E' for one of " + paths);
            }
            boolean[] keep = new boolean[e.getValue().size()];
            for (int i = 0; i < keep.length; i++) {
                keep[i] = e.getValue().get(i);
            }
            if (keep.length != initR) {
                throw new PeftException(source + ": rank_pattern['" + key + "'] has " + keep.length
                        + " entries; the module is built at init_r = " + initR);
            }
            byPath.put(path, keep);
        }
        return byPath;
    }

    /**
     * Cuts the modules by the file config's {@code rank_pattern} (HF's {@code resize_modules_by_rank_pattern}) and
     * then copies the tensors, which must have the cut shapes.
     */
    @Override
    public void loadStateDict(Map<String, NDArray> tensors, String source) {
        if (config.rankPattern() != null) {
            Map<String, boolean[]> byPath = parsePattern(config.rankPattern(), svdLayers.keySet(), config.initR(), name(), source);
            byPath.forEach((path, keep) -> svdLayers.get(path).resize(name(), keep));
            rankPattern = byPath;
        }
        super.loadStateDict(tensors, source);
    }

    @Override
    public void remove() {
        allocator.reset();
        super.remove();
        manager.close();
    }
}
