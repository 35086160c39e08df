package io.github.peft4j.examples.spam;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.ClassificationData;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.Examples;
import io.github.peft4j.data.LabelMap;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.lora.lorahub.LoraHub;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.LrSchedule;
import io.github.peft4j.train.Metrics;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.io.PrintStream;
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
import java.util.function.Predicate;

/**
 * LoRAHub on the real spam data: LoRA plug-ins trained on different corpus slices of the SpamAssassin training split,
 * composed by {@link LoraHub} for a target task from a few labelled emails, compared with each plug-in alone, with
 * uniform weights, and with a LoRA trained on the same few emails.
 *
 * <p>Plug-ins (the spam-job lora row's config: r 8, alpha 16 on query, key, value and attention.output.dense, pooler and
 * classifier in modules_to_save, AdamW with linear decay): {@code c2002} = easy-ham-1 vs spam-1, {@code c2003} =
 * easy-ham-2 vs spam-2, {@code cross} = easy-ham-1 vs spam-2. The target task is hard ham vs spam, which no plug-in saw:
 * the few-shot set is {@code shots} validation emails, half hard-ham-1 and half spam; the test set is every test email
 * of hard-ham-1 and of the spam groups. LoRAHub composes every saved tensor (the heads too) as {@code Σ w_i T_i}.
 */
public final class LoraHubDemo {
    /** The plug-ins: name, the ham group and the spam group they are trained on. */
    static final List<String[]> PLUGINS = List.of(new String[] {"c2002", "easy-ham-1", "spam-1"},
            new String[] {"c2003", "easy-ham-2", "spam-2"}, new String[] {"cross", "easy-ham-1", "spam-2"});
    private static final double LR = 3e-3;

    private LoraHubDemo() {}

    /** The demo's settings (public fields with the defaults of the documented run). */
    public static final class Settings {
        /** Prepared spam data (train/validation/test.jsonl with {@code group}). */
        public Path data;
        /** The BERT model directory (the imported MiniLM). */
        public Path model;
        /** Where the plug-ins and the composed adapter are saved. */
        public Path work = Path.of("lorahub-demo");
        /** Optimizer steps per plug-in. */
        public int pluginSteps = 80;
        /** Few-shot emails of the target task. */
        public int shots = 32;
        /** LoRAHub's loss evaluations. */
        public int hubSteps = LoraHub.DEFAULT_STEPS;
        /** Steps of the LoRA trained on the few-shot emails. */
        public int fewShotSteps = 40;
        /** Tokens per email. */
        public int maxLength = 64;
        /** Spam test emails of the target (a seeded subset; 0 = all); every hard-ham test email is kept. */
        public int testSpam;
        /** Seed of slices, initialisation, data order and CMA-ES. */
        public long seed = 42;
        /** The markdown report, or null for none. */
        public Path results;
        /** The command line, for the report. */
        public String command = "peft4j lorahub-demo";
    }

    /**
     * One row of the comparison.
     *
     * @param name what was evaluated
     * @param weights the plug-in weights (null for the few-shot LoRA)
     * @param fewShotLoss the loss on the few-shot emails
     * @param accuracy target test accuracy
     * @param macroF1 target test macro F1
     * @param hardHamAccuracy accuracy on the target's hard-ham test emails
     * @param spamRecall accuracy on the target's spam test emails
     */
    public record Row(String name, double[] weights, double fewShotLoss, double accuracy, double macroF1,
            double hardHamAccuracy, double spamRecall) {}

    /**
     * What the demo did.
     *
     * @param rows the comparison, in table order
     * @param table the printed table
     * @param hub the LoRAHub search result
     * @param wallSeconds the demo's wall time
     */
    public record Result(List<Row> rows, String table, LoraHub.Result hub, double wallSeconds) {}

    /**
     * Runs the demo.
     *
     * @param s the settings
     * @param out where progress and the table go
     * @return the result
     */
    public static Result run(Settings s, PrintStream out) {
        long start = System.nanoTime();
        if (s.data == null || s.model == null) {
            throw new PeftException("lorahub-demo: give the prepared data and the model directory");
        }
        Engine.getInstance();
        try (Tokenizer tok = Tokenizer.load(s.model)) {
            ClassificationData reader = ClassificationData.builder(tok).maxLength(s.maxLength).build();
            SpamJob.Split train = SpamJob.read(reader, s.data.resolve("train.jsonl"));
            LabelMap labels = ((Examples) train.examples()).labelMap();
            if (labels == null || labels.size() != 2 || labels.id("spam").isEmpty()) {
                throw new PeftException(s.data.resolve("train.jsonl") + ": expected the labels spam and ham, found "
                        + (labels == null ? "none" : labels.labels()));
            }
            ClassificationData withLabels = reader.withLabels(labels);
            SpamJob.Split validation = SpamJob.read(withLabels, s.data.resolve("validation.jsonl"));
            SpamJob.Split test = SpamJob.read(withLabels, s.data.resolve("test.jsonl"));
            int spamId = labels.id("spam").getAsInt();
            int padId = tok.padTokenId().orElse(0);
            Predicate<String> target = g -> g.equals(SpamJob.HARD_HAM) || g.startsWith("spam");
            List<Example> fewShot = fewShot(validation, s.shots, s.seed);
            List<Integer> testIdx = indices(test, target);
            if (s.testSpam > 0) { // every hard ham, a seeded subset of the spam
                List<Integer> spamIdx = new ArrayList<>(testIdx.stream().filter(i -> test.groups().get(i).startsWith("spam")).toList());
                Collections.shuffle(spamIdx, new Random(s.seed + 2));
                List<Integer> keep = new ArrayList<>(testIdx.stream().filter(i -> !test.groups().get(i).startsWith("spam")).toList());
                keep.addAll(spamIdx.subList(0, Math.min(s.testSpam, spamIdx.size())));
                Collections.sort(keep);
                testIdx = keep;
            }
            List<Integer> testIdxFinal = testIdx;
            out.printf(Locale.ROOT, "target task: hard ham vs spam; %d few-shot validation emails, %d test emails (%d hard ham)%n",
                    fewShot.size(), testIdx.size(), testIdxFinal.stream().filter(i -> test.groups().get(i).equals(SpamJob.HARD_HAM)).count());
            List<String> names = new ArrayList<>();
            for (String[] p : PLUGINS) {
                names.add(p[0]);
                Path dir = s.work.resolve("plugins").resolve(p[0]);
                List<Example> slice = new ArrayList<>();
                for (int i = 0; i < train.examples().size(); i++) {
                    String g = train.groups().get(i);
                    if (g.equals(p[1]) || g.equals(p[2])) {
                        slice.add(train.examples().get(i));
                    }
                }
                out.printf(Locale.ROOT, "plug-in %s: %s vs %s, %d training emails, %d steps ...%n", p[0], p[1], p[2],
                        slice.size(), s.pluginSteps);
                out.flush();
                long t0 = System.nanoTime();
                trainLora(s, slice, s.pluginSteps, padId, dir);
                out.printf(Locale.ROOT, "      trained in %s; saved %s%n", SpamJob.clock((System.nanoTime() - t0) / 1e9), dir);
            }
            Engine.getInstance().setRandomSeed((int) s.seed + 1); // every head comes from the adapters
            try (TransformerModel model = Models.load(s.model, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS)) {
                PeftModel peft = PeftModel.wrap(model);
                for (String n : names) {
                    peft.loadAdapter(s.work.resolve("plugins").resolve(n), n, true);
                }
                Collator collator = new Collator(padId, false);
                LoraHub hub = LoraHub.builder().setModel(peft).setPlugins(names).setExamples(fewShot).optSteps(s.hubSteps)
                        .optSeed(s.seed).optBatchSize(16).optCollator(collator).build();
                List<Row> rows = new ArrayList<>();
                for (int i = 0; i < names.size(); i++) {
                    double[] w = new double[names.size()];
                    w[i] = 1;
                    rows.add(row(names.get(i) + " alone", w, hub, "eval", peft, fewShot, test, testIdx, spamId, padId));
                }
                double[] uniform = new double[names.size()];
                Arrays.fill(uniform, 1.0 / names.size());
                rows.add(row("uniform (1/3 each)", uniform, hub, "eval", peft, fewShot, test, testIdx, spamId, padId));
                out.printf(Locale.ROOT, "LoRAHub: %d loss evaluations on the %d few-shot emails ...%n", s.hubSteps, fewShot.size());
                long t0 = System.nanoTime();
                LoraHub.Result r = hub.search("lorahub");
                out.printf(Locale.ROOT, "      searched in %s: weights %s, few-shot loss %.4f%n",
                        SpamJob.clock((System.nanoTime() - t0) / 1e9), fmt(r.weights()), r.loss());
                peft.saveAdapter("lorahub", s.work.resolve("lorahub"));
                rows.add(row("LoRAHub", r.weights(), hub, "lorahub", peft, fewShot, test, testIdx, spamId, padId));
                Row fs = fewShotLora(s, fewShot, test, testIdx, spamId, padId, out);
                rows.add(fs);
                String table = table(rows);
                out.println();
                out.println(table);
                double wall = (System.nanoTime() - start) / 1e9;
                Result res = new Result(rows, table, r, wall);
                if (s.results != null) {
                    writeReport(s, res, fewShot.size(), testIdx.size());
                    out.printf(Locale.ROOT, "wrote %s; whole demo %s%n", s.results, SpamJob.clock(wall));
                }
                return res;
            }
        }
    }

    /** {@code n} validation emails, half hard ham and half spam, in a seeded order. */
    static List<Example> fewShot(SpamJob.Split validation, int n, long seed) {
        List<Example> ham = new ArrayList<>();
        List<Example> spam = new ArrayList<>();
        for (int i = 0; i < validation.examples().size(); i++) {
            String g = validation.groups().get(i);
            if (g.equals(SpamJob.HARD_HAM)) {
                ham.add(validation.examples().get(i));
            } else if (g.startsWith("spam")) {
                spam.add(validation.examples().get(i));
            }
        }
        Random r = new Random(seed);
        Collections.shuffle(ham, r);
        Collections.shuffle(spam, r);
        int h = Math.min(ham.size(), n / 2);
        List<Example> out = new ArrayList<>(ham.subList(0, h));
        out.addAll(spam.subList(0, Math.min(spam.size(), n - h)));
        Collections.shuffle(out, r);
        return out;
    }

    private static List<Integer> indices(SpamJob.Split split, Predicate<String> group) {
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < split.groups().size(); i++) {
            if (group.test(split.groups().get(i))) {
                out.add(i);
            }
        }
        return out;
    }

    /** Trains the spam-job lora row's LoRA on examples and saves it. */
    private static void trainLora(Settings s, List<Example> data, int steps, int padId, Path dir) {
        Engine.getInstance().setRandomSeed((int) s.seed);
        try (TransformerModel model = Models.load(s.model, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter(PeftModel.DEFAULT, SpamJob.lora(new SpamJob.Settings()));
            try (PeftTrainer t = trainer(peft, data, steps, padId, s.seed)) {
                t.train();
            }
            peft.save(dir);
        }
    }

    private static PeftTrainer trainer(PeftModel peft, List<Example> data, int steps, int padId, long seed) {
        return PeftTrainer.builder().setModel(peft).setTrainData(data).optMaxSteps(steps).optLearningRate(LR)
                .optScheduler(LrSchedule.Kind.LINEAR).optWarmupSteps(Math.max(1, steps / 10)).optBatchSize(16)
                .optCollator(new Collator(padId, false)).optSeed(seed).optLogEvery(Math.max(1, steps / 5)).build();
    }

    /** Evaluates a composition (the adapter {@code adapter} after setting the weights, or as it is for "lorahub"). */
    private static Row row(String name, double[] w, LoraHub hub, String adapter, PeftModel peft, List<Example> fewShot,
            SpamJob.Split test, List<Integer> testIdx, int spamId, int padId) {
        double loss = adapter.equals("lorahub") ? Double.NaN : hub.lossAt(adapter, w); // leaves `adapter` composed, active
        peft.setActive(adapter);
        if (Double.isNaN(loss)) {
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(fewShot).optBatchSize(16)
                    .optCollator(new Collator(padId, false)).build()) {
                loss = t.evaluate(fewShot).get("loss");
            }
        }
        return score(name, w, loss, peft, test, testIdx, spamId, padId);
    }

    private static Row score(String name, double[] w, double loss, PeftModel peft, SpamJob.Split test, List<Integer> testIdx,
            int spamId, int padId) {
        List<Example> ex = testIdx.stream().map(test.examples()::get).toList();
        float[] scores;
        try (NDScope scope = new NDScope()) {
            scores = SpamJob.spamScores(peft, ex, spamId, padId, 16);
        }
        int[] gold = new int[ex.size()];
        int[] pred = new int[ex.size()];
        int hard = 0;
        int hardRight = 0;
        int spam = 0;
        int spamRight = 0;
        for (int k = 0; k < ex.size(); k++) {
            gold[k] = ex.get(k).label();
            pred[k] = scores[k] >= 0.5 ? spamId : 1 - spamId;
            boolean right = gold[k] == pred[k];
            if (test.groups().get(testIdx.get(k)).equals(SpamJob.HARD_HAM)) {
                hard++;
                hardRight += right ? 1 : 0;
            } else {
                spam++;
                spamRight += right ? 1 : 0;
            }
        }
        return new Row(name, w, loss, Metrics.accuracy(gold, pred), Metrics.macroF1(gold, pred), (double) hardRight / hard,
                (double) spamRight / spam);
    }

    private static Row fewShotLora(Settings s, List<Example> fewShot, SpamJob.Split test, List<Integer> testIdx, int spamId,
            int padId, PrintStream out) {
        out.printf(Locale.ROOT, "LoRA on the %d few-shot emails: %d steps ...%n", fewShot.size(), s.fewShotSteps);
        Engine.getInstance().setRandomSeed((int) s.seed);
        try (TransformerModel model = Models.load(s.model, Device.cpu(), DataType.FLOAT32, TaskType.SEQ_CLS)) {
            PeftModel peft = PeftModel.wrap(model);
            peft.addAdapter(PeftModel.DEFAULT, SpamJob.lora(new SpamJob.Settings()));
            double loss;
            try (PeftTrainer t = trainer(peft, fewShot, s.fewShotSteps, padId, s.seed)) {
                t.train();
                loss = t.evaluate(fewShot).get("loss");
            }
            return score("LoRA trained on the few-shot set", null, loss, peft, test, testIdx, spamId, padId);
        }
    }

    private static String fmt(double[] w) {
        List<String> p = new ArrayList<>();
        for (int i = 0; i < w.length; i++) {
            p.add(String.format(Locale.ROOT, "%s=%.3f", PLUGINS.get(i)[0], w[i]));
        }
        return String.join(", ", p);
    }

    /**
     * The comparison table in Markdown.
     *
     * @param rows the rows
     * @return the table
     */
    static String table(List<Row> rows) {
        StringBuilder sb = new StringBuilder();
        sb.append("| adapter | weights (c2002, c2003, cross) | few-shot loss | test accuracy | macro F1 | hard-ham accuracy"
                + " | spam recall |\n|---|---|---:|---:|---:|---:|---:|\n");
        for (Row r : rows) {
            String w = r.weights() == null ? "-" : Arrays.stream(r.weights()).mapToObj(x -> String.format(Locale.ROOT, "%.3f", x))
                    .reduce((a, b) -> a + ", " + b).orElse("");
            sb.append(String.format(Locale.ROOT, "| %s | %s | %.4f | %.4f | %.4f | %.4f | %.4f |%n", r.name(), w,
                    r.fewShotLoss(), r.accuracy(), r.macroF1(), r.hardHamAccuracy(), r.spamRecall()));
        }
        return sb.toString().trim();
    }

    private static void writeReport(Settings s, Result r, int shots, int tests) {
        Map<String, String> facts = new LinkedHashMap<>();
        facts.put("command", s.command);
        facts.put("date", ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME));
        facts.put("cores", String.valueOf(Runtime.getRuntime().availableProcessors()));
        facts.put("wall", SpamJob.clock(r.wallSeconds()));
        StringBuilder sb = new StringBuilder();
        sb.append("<!-- measured table written by LoraHubDemo (peft4j lorahub-demo); text around it by hand -->\n");
        sb.append(String.format(Locale.ROOT, "Run: `%s` on %s (%s cores), whole demo %s. Plug-ins: %d steps each; LoRAHub: %d"
                + " loss evaluations on %d few-shot emails (seed %d); few-shot LoRA: %d steps; %d target test emails;"
                + " %d tokens per email.%n%n", facts.get("command"), facts.get("date"), facts.get("cores"), facts.get("wall"),
                s.pluginSteps, r.hub().evaluations(), shots, s.seed, s.fewShotSteps, tests, s.maxLength));
        sb.append(r.table()).append('\n');
        try {
            if (s.results.getParent() != null) {
                Files.createDirectories(s.results.getParent());
            }
            String old = Files.isRegularFile(s.results) ? Files.readString(s.results) : "";
            String begin = "<!-- lorahub-demo:begin -->";
            String end = "<!-- lorahub-demo:end -->";
            String block = begin + "\n" + sb + end;
            int i = old.indexOf(begin);
            int j = old.indexOf(end);
            String text = i >= 0 && j > i ? old.substring(0, i) + block + old.substring(j + end.length())
                    : old + (old.isEmpty() || old.endsWith("\n") ? "" : "\n") + block + "\n";
            AtomicFiles.writeString(s.results, text);
        } catch (IOException e) {
            throw new PeftException(s.results + ": cannot write: " + e.getMessage(), e);
        }
    }
}
