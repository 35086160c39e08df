package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.WeightFiles;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A base model with named adapters of any method. Wrapping freezes every base parameter; adapters are
 * added from a config or loaded from a Hugging Face PEFT directory, made active one or several at a time,
 * disabled in a scope, deleted, saved, and merged into the base weights.
 *
 * <pre>{@code
 * try (TransformerModel base = Models.load(dir)) {
 *     PeftModel peft = PeftModel.wrap(base);
 *     peft.addAdapter("default", new LoraConfig().r(8).loraAlpha(16).targetModules("q_proj", "v_proj"));
 *     System.out.println(peft.trainableReport());
 *     ModelOutput out = peft.forward(ModelInput.of(ids, mask));
 *     peft.save(Path.of("my-adapter"));
 * }
 * }</pre>
 *
 * <p>Threads: {@link #forward} (and generation and serving on top of it) may run on several threads at once on one
 * PeftModel for inference (each call's row adapters are per thread); changing adapters (add, load, delete,
 * {@code setActive}, {@code disabled}, merge, unmerge) must happen on one thread while no forward call runs
 * elsewhere, and is refused with a {@link PeftException} when one does. Training uses one thread. See
 * docs/reliability.md.
 */
public final class PeftModel {
    private static final Logger LOG = LoggerFactory.getLogger(PeftModel.class);
    /** The adapter name HF PEFT uses when none is given; it is saved in the directory root. */
    public static final String DEFAULT = "default";
    private static final String CONFIG_FILE = "adapter_config.json";
    private static final String WEIGHTS_FILE = "adapter_model.safetensors";
    private static final String LEGACY_WEIGHTS_FILE = "adapter_model.bin";

    private final TransformerModel model;
    private final AdapterState state = new AdapterState();
    private final Map<String, Entry> adapters = new LinkedHashMap<>();
    private boolean unloaded;

    /** An attached adapter with its modules_to_save copies. */
    private record Entry(Adapter adapter, LayerAdapter saved, boolean trainable) {
        Stream<Adapter> parts() {
            return saved == null ? Stream.of(adapter) : Stream.of(adapter, saved);
        }
    }

    private PeftModel(TransformerModel model) {
        this.model = model;
    }

    /**
     * Wraps a model and freezes all of its parameters.
     *
     * @param model the base model
     * @return the PEFT model
     */
    public static PeftModel wrap(TransformerModel model) {
        model.parameters().values().forEach(p -> p.setTrainable(false));
        return new PeftModel(model);
    }

    /** @return the underlying model (with adapter layers in its slots) */
    public TransformerModel model() {
        return model;
    }

    /** @return the shared active-adapter state */
    public AdapterState state() {
        return state;
    }

    /**
     * Adds a new trainable adapter and makes it the only active one (as HF PEFT's {@code add_adapter} +
     * {@code set_adapter}).
     *
     * @param name the adapter name
     * @param config the config
     * @return the adapter
     */
    public Adapter addAdapter(String name, PeftConfig config) {
        Adapter a = attach(name, config, "config of adapter '" + name + "'", true);
        setActive(name);
        return a;
    }

    private Adapter attach(String name, PeftConfig config, String where, boolean trainable) {
        checkNoForwardElsewhere("adding or loading an adapter");
        checkUsable();
        io.github.peft4j.io.SafeNames.adapterName(name); // it becomes a directory name and a request parameter
        if (adapters.containsKey(name)) {
            throw new PeftException("an adapter named '" + name + "' already exists; delete it first or pick another name");
        }
        TaskType configTask = config.task();
        if (configTask != null && configTask != model.task()) {
            throw new PeftException(where + ": task_type " + configTask + " does not fit " + model.architecture()
                    + " (a " + model.task() + " model); load the base with AutoPeftModel.loadBase(modelDir, adapterDir,"
                    + " ...) to give it the head the adapter names");
        }
        config = PeftMethods.copy(config); // configs are values: defaults resolve into this copy, never the caller's
        if (config.taskType() == null) {
            config.taskType(model.task());
        }
        if (config.baseModelNameOrPath() == null) { // as HF PEFT: AutoPeftModelFor* loads the base from it
            config.baseModelNameOrPath(io.github.peft4j.model.Models.directoryOf(model));
        }
        config.validate(where);
        PeftMethod method = PeftMethods.get(config.peftType());
        Map<String, Adapter> others = new LinkedHashMap<>();
        adapters.forEach((n, e) -> others.put(n, e.adapter()));
        Adapter adapter = method.attach(new AdapterContext(model, state, where, Collections.unmodifiableMap(others)), name, config);
        LayerAdapter saved = null;
        try {
            saved = attachModulesToSave(name, config, adapter.capability(PromptAdapter.class) != null, where);
        } catch (RuntimeException e) {
            adapter.remove();
            throw e;
        }
        Entry entry = new Entry(adapter, saved, trainable);
        adapters.put(name, entry);
        entry.parts().forEach(p -> p.parameters().values().forEach(x -> x.setTrainable(false)));
        LOG.info("added {} adapter '{}' with {} parameters", config.peftType(), name, count(entry, false));
        return adapter;
    }

    private LayerAdapter attachModulesToSave(String name, PeftConfig config, boolean prompt, String where) {
        List<String> paths = Targets.modulesToSave(model, config);
        if (paths.isEmpty()) {
            return null;
        }
        Map<String, AdapterLayer> layers = LayerAdapter.install(new AdapterContext(model, state, where, Map.of()), paths,
                ModulesToSaveLayer.class, new LayerAdapter.Installer<>() {
                    @Override
                    public ModulesToSaveLayer wrap(String path, io.github.peft4j.nn.Module base, AdapterState s) {
                        return new ModulesToSaveLayer(base, s);
                    }

                    @Override
                    public void add(ModulesToSaveLayer layer, String path) {
                        layer.addCopy(name, path);
                    }
                });
        return new LayerAdapter(name, config, model, layers, prompt ? "base_model." : LayerAdapter.TUNER_PREFIX);
    }

    /**
     * Makes the given adapters active (their terms are summed where a method supports several at once);
     * only active adapters that were added as trainable receive gradients.
     *
     * @param names adapter names
     */
    public void setActive(String... names) {
        checkNoForwardElsewhere("setActive");
        checkUsable();
        for (String n : names) {
            entry(n);
        }
        List<String> list = Arrays.asList(names);
        long prompts = list.stream().filter(n -> entry(n).adapter().capability(PromptAdapter.class) != null).count();
        if (prompts > 1) {
            throw new PeftException("only one prompt-learning adapter can be active at a time, got " + list);
        }
        Set<String> before = state.active();
        List<String> wasActive = new ArrayList<>(before);
        state.setActive(list);
        adapters.forEach((n, e) -> {
            boolean on = list.contains(n);
            if (on != wasActive.contains(n)) {
                e.parts().forEach(p -> p.activeChanged(on));
            }
            e.parts().forEach(p -> p.parameters().values().forEach(x -> x.setTrainable(on && e.trainable())));
        });
    }

    /**
     * The given capability of every active, trainable adapter (and of its modules_to_save part), in activation
     * order: what the trainer calls {@link TrainingHooks} on. Empty inside a disabled scope.
     *
     * @param type the capability interface
     * @param <T> the capability type
     * @return the capabilities found
     */
    public <T> List<T> activeCapabilities(Class<T> type) {
        List<T> out = new ArrayList<>();
        if (state.isDisabled()) {
            return out;
        }
        for (String n : state.active()) {
            Entry e = entry(n);
            if (e.trainable()) {
                e.parts().map(p -> p.capability(type)).filter(java.util.Objects::nonNull).forEach(out::add);
            }
        }
        return out;
    }

    /** @return the active adapter names */
    public List<String> activeAdapters() {
        return new ArrayList<>(state.active());
    }

    /** @return all adapter names */
    public Set<String> adapterNames() {
        return Collections.unmodifiableSet(adapters.keySet());
    }

    /**
     * @param name an adapter name
     * @return the adapter
     */
    public Adapter adapter(String name) {
        return entry(name).adapter();
    }

    private Entry entry(String name) {
        Entry e = adapters.get(name);
        if (e == null) {
            throw new PeftException("no adapter named '" + name + "'; adapters: " + adapters.keySet());
        }
        return e;
    }

    /**
     * A scope in which every adapter is off and the model computes as the base model. Close it to restore.
     *
     * @return the scope
     */
    public AutoCloseable disabled() {
        checkNoForwardElsewhere("disabled");
        checkUsable();
        if (state.isDisabled()) {
            throw new PeftException("adapters are already disabled");
        }
        state.setDisabled(true);
        List<Entry> active = adapters.values().stream().filter(e -> state.active().contains(e.adapter().name())).toList();
        active.forEach(e -> e.parts().forEach(p -> p.activeChanged(false)));
        return () -> {
            state.setDisabled(false);
            active.forEach(e -> e.parts().forEach(p -> p.activeChanged(true)));
        };
    }

    /**
     * Deletes an adapter: its layers are removed from the model (a wrapper left with no adapters gives its
     * slot back to the original module) and its arrays are freed.
     *
     * @param name the adapter name
     */
    public void deleteAdapter(String name) {
        checkNoForwardElsewhere("deleteAdapter");
        checkUsable();
        Entry e = entry(name);
        if (state.active().contains(name)) {
            e.parts().forEach(p -> p.activeChanged(false));
        }
        e.parts().forEach(Adapter::remove);
        adapters.remove(name);
        state.remove(name);
    }

    /**
     * Runs the model with the active adapters. The input's {@link CallContext} is current for every layer during
     * the call: with row adapters (HF PEFT's {@code adapter_names=}), each row runs with its own adapter
     * ({@link CallContext#BASE}: the base model), rows grouped by adapter in one pass. An active input-side adapter
     * ({@link PromptAdapter}) prepares the input first: embeddings prepended to the input (the attention mask and
     * token types grow by as many positions, and causal-LM logits keep them), or a key/value prefix in every layer
     * (the mask grows, the logits do not). Given a cache ({@code input.past()}: a later decoding step) the virtual
     * tokens are already in it and are not added again; the mask must then cover them, as in HF PEFT's
     * {@code generate}.
     *
     * @param input the input
     * @return the output
     */
    public ModelOutput forward(ModelInput input) {
        checkUsable();
        List<String> rows = input.context().rowAdapters();
        if (rows != null) {
            checkRowAdapters(rows);
        }
        forwardsInFlight.incrementAndGet();
        forwardsHere.get()[0]++;
        try (AdapterState.CallScope scope = state.enter(input.context(), input.attentionMask())) {
            ModelInput in = input;
            PromptAdapter prompt = activePrompt();
            if (prompt != null) {
                in = prompt.prepare(in, model);
            }
            return model.forward(in);
        } finally {
            forwardsHere.get()[0]--;
            forwardsInFlight.decrementAndGet();
        }
    }

    /** HF PEFT's checks for {@code adapter_names=}, and ours: every named adapter must route rows. */
    private void checkRowAdapters(List<String> rows) {
        for (String n : new java.util.LinkedHashSet<>(rows)) {
            if (CallContext.BASE.equals(n)) {
                continue;
            }
            Entry e = adapters.get(n);
            if (e == null) {
                throw new PeftException("row adapters: no adapter named '" + n + "'; adapters: " + adapters.keySet()
                        + " (or " + CallContext.BASE + " for the base model)");
            }
            if (e.parts().anyMatch(p -> p.capability(RowRouted.class) == null)) {
                throw new PeftException("row adapters: " + e.adapter().config().peftType() + " adapter '" + n
                        + "' cannot run per row in a mixed batch");
            }
        }
        for (String n : state.active()) {
            Entry e = entry(n);
            if (e.parts().anyMatch(p -> p.capability(RowRouted.class) == null)) {
                throw new PeftException("row adapters: the active " + e.adapter().config().peftType() + " adapter '" + n
                        + "' would act on every row; deactivate it (setActive) before a mixed-adapter batch");
            }
        }
        for (Entry e : adapters.values()) {
            Mergeable m = e.adapter().capability(Mergeable.class);
            if (m instanceof LayerAdapter l && l.isMerged()) {
                throw new PeftException("row adapters: adapter '" + e.adapter().name() + "' is merged into the base"
                        + " weights; unmerge it before a mixed-adapter batch");
            }
        }
    }

    /** @return the active input-side adapter (not in a disabled scope), or null */
    public PromptAdapter activePrompt() {
        if (state.isDisabled()) {
            return null;
        }
        for (String n : state.active()) {
            PromptAdapter p = entry(n).adapter().capability(PromptAdapter.class);
            if (p != null) {
                return p;
            }
        }
        return null;
    }

    /** @return the parameters that receive gradients, by in-memory name */
    public Map<String, Param> trainableParameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        allParameters().forEach((k, v) -> {
            if (v.isTrainable()) {
                out.put(k, v);
            }
        });
        return out;
    }

    /** @return every distinct parameter: the model's (with adapter layers) and those held outside it (prompt encoders) */
    public Map<String, Param> allParameters() {
        Map<String, Param> out = new LinkedHashMap<>();
        Map<Param, Boolean> seen = new IdentityHashMap<>();
        model.parameters().forEach((k, v) -> {
            if (seen.put(v, true) == null) {
                out.put(k, v);
            }
        });
        adapters.values().forEach(e -> e.parts().forEach(p -> p.parameters().forEach((k, v) -> {
            if (seen.put(v, true) == null) {
                out.put(k, v);
            }
        })));
        return out;
    }

    private long count(Entry e, boolean trainableOnly) {
        return e.parts().flatMap(p -> p.parameters().values().stream()).distinct()
                .filter(p -> !trainableOnly || p.isTrainable()).mapToLong(Param::numel).sum();
    }

    /**
     * HF PEFT's {@code print_trainable_parameters} line.
     *
     * @return {@code trainable params: N || all params: M || trainable%: P}
     */
    public String trainableReport() {
        Map<String, Param> all = allParameters();
        long total = all.values().stream().mapToLong(Param::numel).sum();
        long trainable = all.values().stream().filter(Param::isTrainable).mapToLong(Param::numel).sum();
        return String.format(java.util.Locale.ROOT, "trainable params: %,d || all params: %,d || trainable%%: %.4f",
                trainable, total, 100.0 * trainable / total);
    }

    /**
     * Saves every adapter in HF PEFT's layout: {@code default} in the directory root, others in
     * {@code dir/<name>/}; each as {@code adapter_config.json} + {@code adapter_model.safetensors}, written
     * to temp files and renamed.
     *
     * @param dir the directory
     */
    public void save(Path dir) {
        for (String name : adapters.keySet()) {
            saveAdapter(name, DEFAULT.equals(name) ? dir : dir.resolve(name));
        }
    }

    /**
     * Saves one adapter into a directory.
     *
     * @param name the adapter name
     * @param dir the directory (created if needed)
     */
    public void saveAdapter(String name, Path dir) {
        checkUsable();
        Entry e = entry(name);
        PeftConfig config = e.adapter().configToSave();
        config.markInference();
        Map<String, NDArray> tensors = stateDict(name);
        try {
            Files.createDirectories(dir);
            SafeTensorsWriter.write(dir.resolve(WEIGHTS_FILE), tensors, Map.of("format", "pt"));
            AtomicFiles.writeString(dir.resolve(CONFIG_FILE), PeftMethods.toJson(config));
        } catch (IOException ex) {
            throw new PeftException(dir + ": cannot save adapter '" + name + "': " + ex.getMessage(), ex);
        }
        LOG.info("saved adapter '{}' ({} tensors) to {}", name, tensors.size(), dir);
    }

    /**
     * Loads an adapter saved by HF PEFT or peft4j from a directory holding {@code adapter_config.json} and
     * {@code adapter_model.safetensors} (or, if that is absent, HF PEFT's legacy {@code adapter_model.bin}, read by
     * {@link io.github.peft4j.io.TorchBinFile}), or in another layout a registered {@link AdapterFormat} recognises
     * (AdapterHub's {@code save_adapter} directories with peft-adapters on the classpath), and makes it active.
     *
     * @param dir the adapter directory
     * @param name the name to give it
     * @param trainable whether its parameters receive gradients (HF's {@code is_trainable})
     * @return the adapter
     */
    public Adapter loadAdapter(Path dir, String name, boolean trainable) {
        AdapterFormat format = AdapterFormat.find(dir); // another library's layout (AdapterHub), or null for HF PEFT's
        PeftConfig config = format != null ? format.readConfig(dir, model) : PeftMethods.read(dir.resolve(CONFIG_FILE));
        Path weights = dir.resolve(WEIGHTS_FILE);
        if (format == null && !Files.isRegularFile(weights) && Files.isRegularFile(dir.resolve(LEGACY_WEIGHTS_FILE))) {
            weights = dir.resolve(LEGACY_WEIGHTS_FILE); // HF PEFT's torch.save format, read without running code
        }
        if (format == null && !Files.isRegularFile(weights)) {
            throw new PeftException(dir + ": no " + WEIGHTS_FILE + " (or legacy " + LEGACY_WEIGHTS_FILE
                    + ") next to " + CONFIG_FILE);
        }
        String source = format != null ? dir.toString() : weights.toString();
        Adapter a = attach(name, config, format != null ? dir.toString() : dir.resolve(CONFIG_FILE).toString(), trainable);
        try (NDManager tmp = NDManager.newBaseManager(model.device())) {
            Map<String, NDArray> tensors = new LinkedHashMap<>();
            if (format != null) {
                tensors.putAll(format.readTensors(dir, a, tmp));
            } else {
                tensors.putAll(WeightFiles.loadAll(weights, tmp, null));
            }
            copyIn(entry(name), tensors, source, format == null);
        } catch (RuntimeException ex) {
            deleteAdapter(name);
            throw ex;
        }
        setActive(name);
        return a;
    }

    /**
     * Loads every adapter of a directory written by {@link #save}: the root as {@code default} (if it has an
     * {@code adapter_config.json}) and each subdirectory that has one under its own name. All are loaded
     * for inference; the first becomes active.
     *
     * @param dir the directory
     * @return the loaded adapter names
     */
    public List<String> loadAdapters(Path dir) {
        List<String> names = new ArrayList<>();
        if (Files.isRegularFile(dir.resolve(CONFIG_FILE))) {
            loadAdapter(dir, DEFAULT, false);
            names.add(DEFAULT);
        }
        try (Stream<Path> s = Files.list(dir)) {
            for (Path sub : s.filter(p -> Files.isRegularFile(p.resolve(CONFIG_FILE))).sorted().toList()) {
                String n = sub.getFileName().toString();
                loadAdapter(sub, n, false);
                names.add(n);
            }
        } catch (IOException e) {
            throw new PeftException(dir + ": cannot list: " + e.getMessage(), e);
        }
        if (names.isEmpty()) {
            throw new PeftException(dir + ": no " + CONFIG_FILE + " here or in a subdirectory");
        }
        setActive(names.get(0));
        return names;
    }

    /**
     * Adds an adapter combined from weighted existing adapters of one method, as HF PEFT's
     * {@code add_weighted_adapter}; the method must implement {@link WeightedCombiner} (LoRA does: see
     * {@code io.github.peft4j.lora.combine.Combination} for the types). As in HF, the new adapter is frozen and not
     * made active ({@link #setActive} it, or {@link #saveAdapter} it); unlike HF, an existing name is an error rather
     * than a silent no-op.
     *
     * @param name the new adapter's name
     * @param sources the adapters to combine, in order (order matters for {@code cat} and for random pruning)
     * @param weights one weight per source; negative weights subtract
     * @param spec the combination (method-specific)
     * @return the new adapter
     */
    public Adapter addWeightedAdapter(String name, List<String> sources, double[] weights, WeightedCombiner.Spec spec) {
        checkUsable();
        if (sources == null || sources.isEmpty()) {
            throw new PeftException("addWeightedAdapter '" + name + "': no source adapters given");
        }
        if (weights == null || weights.length != sources.size()) {
            throw new PeftException("addWeightedAdapter '" + name + "': " + sources.size() + " source adapters " + sources
                    + " but " + (weights == null ? 0 : weights.length) + " weights; expected one weight per adapter");
        }
        List<Adapter> src = new ArrayList<>();
        for (String s : sources) {
            src.add(entry(s).adapter());
        }
        String type = src.get(0).config().peftType();
        for (Adapter a : src) {
            if (!a.config().peftType().equals(type)) {
                throw new PeftException("addWeightedAdapter '" + name + "': adapter '" + a.name() + "' is "
                        + a.config().peftType() + ", adapter '" + src.get(0).name() + "' is " + type
                        + "; only adapters of one method combine");
            }
        }
        if (!(PeftMethods.get(type) instanceof WeightedCombiner combiner)) {
            throw new PeftException("addWeightedAdapter '" + name + "': the " + type + " method cannot combine adapters");
        }
        PeftConfig config = combiner.combinedConfig(src, spec);
        Adapter a = attach(name, config, "weighted combination '" + name + "' (" + spec.type() + " of " + sources + ")", false);
        try {
            combiner.combineInto(a, src, weights.clone(), spec);
        } catch (RuntimeException e) {
            deleteAdapter(name);
            throw e;
        }
        LOG.info("combined {} into adapter '{}' ({}, weights {})", sources, name, spec.type(), Arrays.toString(weights));
        return a;
    }

    /**
     * The tensors {@link #saveAdapter} writes for an adapter (its layers' and its modules_to_save copies'), keyed as
     * in {@code adapter_model.safetensors}. The arrays are the live parameter values: copy what must outlive a change.
     *
     * @param name the adapter name
     * @return saved key to array
     */
    public Map<String, NDArray> stateDict(String name) {
        checkUsable();
        Map<String, NDArray> tensors = new LinkedHashMap<>();
        entry(name).parts().forEach(p -> tensors.putAll(p.stateDict()));
        return tensors;
    }

    /**
     * Copies tensors keyed as {@link #stateDict} into an attached adapter (and its modules_to_save copies): what
     * {@link #loadAdapter} does after reading the file. Every expected key must be present with its shape.
     *
     * @param name the adapter name
     * @param tensors saved key to array
     * @param source where the tensors come from, for messages
     */
    public void loadStateDict(String name, Map<String, NDArray> tensors, String source) {
        checkUsable();
        copyIn(entry(name), new LinkedHashMap<>(tensors), source, true);
    }

    /** Splits saved tensors between an adapter and its modules_to_save part and copies them in. */
    private static void copyIn(Entry e, Map<String, NDArray> tensors, String source, boolean savedRequired) {
        Map<String, NDArray> forSaved = new LinkedHashMap<>();
        if (e.saved() != null) {
            Set<String> keys = e.saved().stateDict().keySet();
            tensors.keySet().stream().filter(keys::contains).collect(Collectors.toList())
                    .forEach(k -> forSaved.put(k, tensors.remove(k)));
            if (savedRequired || !forSaved.isEmpty()) { // a foreign format may hold no head: copies keep the base's
                e.saved().loadStateDict(forSaved, source);
            }
        }
        e.adapter().loadStateDict(tensors, source);
    }

    /**
     * Merges the named adapters into the base weights (they stay attached; their terms are skipped while
     * merged). Fails before changing anything if an adapter cannot merge.
     *
     * @param names adapter names
     */
    public void merge(String... names) {
        checkNoForwardElsewhere("merge");
        for (String n : names) {
            mergeable(n);
        }
        for (String n : names) {
            mergeable(n).merge();
        }
    }

    private Mergeable mergeable(String name) {
        Adapter a = entry(name).adapter();
        Mergeable m = a.capability(Mergeable.class);
        if (m == null || !m.canMerge()) {
            String why = a instanceof LayerAdapter la ? la.layers().entrySet().stream()
                    .filter(l -> !l.getValue().canMerge()).findFirst()
                    .map(l -> ": " + l.getValue().whyNoMerge(l.getKey()))
                    .orElse("") : "";
            throw new PeftException(a.config().peftType() + " adapter '" + name + "' cannot be merged into the base weights"
                    + why);
        }
        return m;
    }

    /**
     * Subtracts merged adapters from the base weights again.
     *
     * @param names adapter names
     */
    public void unmerge(String... names) {
        checkNoForwardElsewhere("unmerge");
        for (String n : names) {
            Adapter a = entry(n).adapter();
            Mergeable m = a.capability(Mergeable.class);
            if (m == null) {
                throw new PeftException(a.config().peftType() + " adapter '" + n + "' cannot be unmerged");
            }
            m.unmerge();
        }
    }

    /**
     * Merges the active adapters into the base weights, removes every adapter layer (a modules_to_save
     * copy of the active adapter replaces its original) and returns the plain model, which saves as a
     * normal Hugging Face checkpoint. This PeftModel is unusable afterwards.
     *
     * @return the base model with merged weights
     */
    public TransformerModel mergeAndUnload() {
        checkNoForwardElsewhere("mergeAndUnload");
        checkUsable();
        List<String> active = new ArrayList<>(state.active());
        merge(active.toArray(new String[0]));
        for (String n : new ArrayList<>(adapters.keySet())) {
            Entry e = adapters.get(n);
            if (e.saved() != null && active.contains(n)) {
                for (Map.Entry<String, AdapterLayer> l : e.saved().layers().entrySet()) {
                    ModulesToSaveLayer w = (ModulesToSaveLayer) l.getValue();
                    io.github.peft4j.nn.Module copy = w.copy(n);
                    LayerAdapter.parentOf(model, l.getKey()).replace(LayerAdapter.leaf(l.getKey()), copy);
                }
                e.adapter().remove();
            } else {
                e.parts().forEach(Adapter::remove);
            }
        }
        adapters.clear();
        state.setActive(List.of());
        model.parameters().values().forEach(p -> p.setTrainable(false));
        unloaded = true;
        return model;
    }

    /** Forward calls running now, on any thread, and on this thread (a hook may call forward re-entrantly). */
    private final java.util.concurrent.atomic.AtomicInteger forwardsInFlight = new java.util.concurrent.atomic.AtomicInteger();
    private final ThreadLocal<int[]> forwardsHere = ThreadLocal.withInitial(() -> new int[1]);

    /**
     * Refuses to change the adapter set or the active adapters while inference runs on other threads (their layers
     * read that state without locks): {@link #forward} may be called from several threads at once, the changes
     * only from one thread while no forward call runs elsewhere.
     */
    private void checkNoForwardElsewhere(String op) {
        int others = forwardsInFlight.get() - forwardsHere.get()[0];
        if (others > 0) {
            throw new PeftException(op + ": " + others + " forward call(s) are running on other threads; change adapters "
                    + "(add, load, delete, setActive, disabled, merge, unmerge) only while no inference runs, or give "
                    + "each thread its own PeftModel");
        }
    }

    private void checkUsable() {
        if (unloaded) {
            throw new PeftException("this PeftModel was unloaded by mergeAndUnload(); use the returned model");
        }
    }
}
