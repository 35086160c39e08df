package io.github.peft4j.examples.sft;

import io.github.peft4j.data.Example;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.serve.LogitsServer;
import io.github.peft4j.generate.serve.RemoteLm;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Continual learning over three tasks in sequence — opinion (exact match), pos (noun or verb, exact match), then the
 * define/use instructions (held-out response loss) — two ways: one LoRA plug-in per task (the base stays frozen;
 * each task's plug-in is stored under the task's name, loaded back from disk and switched by name), and sequential
 * full fine-tuning of one model (forgetting shows in the earlier tasks' columns). Finally all plug-ins are served at
 * once and one mixed batch, each row routed to its task's plug-in ({@link CallContext#rowAdapters}), must give the
 * answers of the one-plug-in-at-a-time runs.
 */
final class ContinualSection {
    /** The tasks, in training order. */
    static final List<String> TASKS = List.of("opinion", "pos", "instruct");

    private ContinualSection() {}

    /** A task's data and metric. */
    private record Task(String name, List<Example> train, List<String> questions, List<String> gold, List<Example> heldOut) {
        boolean closed() {
            return heldOut == null;
        }

        String metric() {
            return closed() ? "exact match" : "response loss";
        }
    }

    static String run(SftJob.Context c) {
        SftJob.Settings s = c.s();
        PrintStream out = c.out();
        long t0 = System.nanoTime();
        List<Task> tasks = new ArrayList<>();
        for (String name : List.of("opinion", "pos")) {
            List<String[]> test = SftData.read(c.dataDir().resolve(name + "-test.jsonl"));
            tasks.add(new Task(name, c.examples(SftData.read(c.dataDir().resolve(name + "-train.jsonl"))),
                    test.stream().map(r -> r[1]).toList(), test.stream().map(r -> r[2]).toList(), null));
        }
        tasks.add(new Task("instruct", c.examples(SftData.read(c.dataDir().resolve("instruct-train.jsonl"))), null, null,
                c.examples(SftData.read(c.dataDir().resolve("instruct-test.jsonl")))));
        Path dir = s.work.resolve("continual");
        Path plugins = dir.resolve("plugins");
        double lr = s.lr.get("lora");
        // [stage][task]: stage 0 = before any training
        double[][] plug = new double[tasks.size() + 1][tasks.size()];
        double[][] full = new double[tasks.size() + 1][tasks.size()];
        try (TransformerModel m = Models.load(c.modelDir())) {
            PeftModel peft = PeftModel.wrap(m);
            for (int u = 0; u < tasks.size(); u++) {
                plug[0][u] = metric(c, peft, tasks.get(u));
                full[0][u] = plug[0][u];
            }
            for (int t = 0; t < tasks.size(); t++) {
                Task task = tasks.get(t);
                out.printf(Locale.ROOT, "continual: stage %d, LoRA plug-in '%s' (%d steps) ...%n", t + 1, task.name(),
                        s.continualSteps);
                peft.addAdapter(task.name(), SftJob.lora(s));
                for (String other : peft.adapterNames()) {
                    boolean mine = other.equals(task.name());
                    peft.adapter(other).parameters().values().forEach(p -> p.setTrainable(mine));
                }
                SftJob.train(c, peft, task.train(), null, s.continualSteps, lr, dir.resolve("runs-" + task.name()), null,
                        task.name());
                peft.saveAdapter(task.name(), plugins.resolve(task.name()));
            }
        }
        // the plug-ins loaded back from disk, switched by name
        List<String> names;
        try (TransformerModel m = Models.load(c.modelDir())) {
            PeftModel peft = PeftModel.wrap(m);
            for (Task task : tasks) {
                peft.loadAdapter(plugins.resolve(task.name()), task.name(), false);
            }
            names = new ArrayList<>(peft.adapterNames());
            for (int t = 0; t < tasks.size(); t++) {
                for (int u = 0; u < tasks.size(); u++) {
                    if (u <= t) {
                        peft.setActive(tasks.get(u).name());
                        plug[t + 1][u] = metric(c, peft, tasks.get(u));
                    } else {
                        plug[t + 1][u] = plug[0][u]; // not learned yet: the frozen base answers
                    }
                }
            }
            String mixed = mixedBatch(c, peft, tasks.subList(0, 2));
            out.println("continual: " + mixed);
            // sequential full fine-tuning
            String table;
            try (TransformerModel f = Models.load(c.modelDir())) {
                PeftModel fp = PeftModel.wrap(f);
                f.parameters().values().forEach(p -> p.setTrainable(true));
                for (int t = 0; t < tasks.size(); t++) {
                    out.printf(Locale.ROOT, "continual: stage %d, full fine-tuning on '%s' (%d steps) ...%n", t + 1,
                            tasks.get(t).name(), s.continualSteps);
                    SftJob.train(c, fp, tasks.get(t).train(), null, s.continualSteps, s.lr.get("full"),
                            dir.resolve("runs-full-" + tasks.get(t).name()), null, "full-" + t);
                    for (int u = 0; u < tasks.size(); u++) {
                        full[t + 1][u] = metric(c, fp, tasks.get(u));
                    }
                }
            }
            table = table(tasks, plug, full);
            StringBuilder md = new StringBuilder("## Continual learning\n\n");
            md.append(table).append("\n\n");
            md.append(String.format(Locale.ROOT, "Tasks in order: opinion (\"Is the word X positive or negative?\", exact"
                    + " match on %d held-out words), pos (\"Is the word X a noun or a verb?\" for WordNet lemmas listed under"
                    + " one of the two only, exact match on %d held-out words), instruct (define / use a word, mean response"
                    + " loss on %d held-out records; lower is better). Each stage trains %d steps of batch %d. LoRA plug-ins:"
                    + " one adapter per task (r %d on every projection, lr %s) over the frozen base, saved to `%s/<task>`,"
                    + " loaded back and switched by name (%s); a task not learned yet is answered by the base."
                    + " Full: one model fine-tuned on the tasks in turn (lr %s), every task measured after every stage."
                    + " Section time %s.%n%n", tasks.get(0).questions().size(), tasks.get(1).questions().size(),
                    tasks.get(2).heldOut().size(), s.continualSteps, s.batchSize, s.loraR, lr, plugins, String.join(", ", names),
                    s.lr.get("full"), SpamJob.clock((System.nanoTime() - t0) / 1e9)));
            md.append("Mixed batch: ").append(mixed).append('\n');
            return md.toString().stripTrailing();
        }
    }

    private static double metric(SftJob.Context c, PeftModel peft, Task t) {
        if (!t.closed()) {
            return SftEval.responseLoss(peft, t.heldOut(), c.padId(), c.s().batchSize);
        }
        return SftEval.exactMatch(c.tok(), SftEval.answers(LanguageModel.of(peft), c.tok(), t.questions(), SftEval.ANSWER_TOKENS,
                50, null), t.gold());
    }

    /**
     * Serves every plug-in at once and sends one batch mixing the closed tasks' questions, each row with its task's
     * plug-in; compares with the answers of one plug-in at a time.
     */
    private static String mixedBatch(SftJob.Context c, PeftModel peft, List<Task> closed) {
        List<String> q = new ArrayList<>();
        List<String> rows = new ArrayList<>();
        List<String> gold = new ArrayList<>();
        int n = Math.min(32, Math.min(closed.get(0).questions().size(), closed.get(1).questions().size()));
        for (int i = 0; i < n; i++) {
            for (Task t : closed) {
                q.add(t.questions().get(i));
                rows.add(t.name());
                gold.add(t.gold().get(i));
            }
        }
        Map<String, List<SftEval.Answer>> single = new LinkedHashMap<>();
        for (Task t : closed) {
            peft.setActive(t.name());
            single.put(t.name(), SftEval.answers(LanguageModel.of(peft), c.tok(), t.questions().subList(0, n),
                    SftEval.ANSWER_TOKENS, 50, null));
        }
        List<SftEval.Answer> mixed;
        try (LogitsServer server = LogitsServer.start(peft, LogitsServer.Options.defaults());
                RemoteLm remote = RemoteLm.connect(server.uri(), java.time.Duration.ofMinutes(10))) {
            mixed = SftEval.answers(remote, c.tok(), q, SftEval.ANSWER_TOKENS, 2 * n, rows);
        }
        int same = 0;
        int[] right = new int[closed.size()];
        for (int i = 0; i < q.size(); i++) {
            String task = rows.get(i);
            same += mixed.get(i).text().equals(single.get(task).get(i / closed.size()).text()) ? 1 : 0;
            right[i % closed.size()] += SftEval.matches(c.tok(), mixed.get(i), gold.get(i)) ? 1 : 0;
        }
        return String.format(Locale.ROOT, "all %d plug-ins served at once by one LogitsServer; one batch of %d rows"
                + " (%s and %s questions interleaved, --row-adapters style: each row names its plug-in) gave %d of %d"
                + " answers identical to the one-plug-in-at-a-time runs; exact match in the mixed batch: %s %.4f, %s %.4f.",
                peft.adapterNames().size(), q.size(), closed.get(0).name(), closed.get(1).name(), same, q.size(),
                closed.get(0).name(), (double) right[0] / n, closed.get(1).name(), (double) right[1] / n);
    }

    private static String table(List<Task> tasks, double[][] plug, double[][] full) {
        List<String[]> cells = new ArrayList<>();
        List<String> head = new ArrayList<>(List.of("after stage"));
        for (Task t : tasks) {
            head.add(t.name() + " (" + t.metric() + "), LoRA plug-ins");
            head.add(t.name() + ", sequential full");
        }
        cells.add(head.toArray(new String[0]));
        for (int st = 0; st <= tasks.size(); st++) {
            List<String> r = new ArrayList<>();
            r.add(st == 0 ? "0 (base)" : st + " (" + tasks.get(st - 1).name() + ")");
            for (int u = 0; u < tasks.size(); u++) {
                r.add(String.format(Locale.ROOT, "%.4f", plug[st][u]));
                r.add(String.format(Locale.ROOT, "%.4f", full[st][u]));
            }
            cells.add(r.toArray(new String[0]));
        }
        return SpamJob.markdown(cells, 1);
    }
}
