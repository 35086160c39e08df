package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.ClassificationData;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.ConllData;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.Examples;
import io.github.peft4j.data.InstructionData;
import io.github.peft4j.data.LabelMap;
import io.github.peft4j.data.PretokenizedData;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TaskType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.LrSchedule;
import io.github.peft4j.train.Optimizer;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Sgd;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * {@code peft4j train}: fine-tunes an adapter on a model directory with {@link PeftTrainer} and saves it to
 * {@code --output} (with {@code checkpoint-<step>/}, {@code best/}, {@code metrics.jsonl} and {@code curves.png}).
 */
final class TrainCommand {
    static final String USAGE_LINE = String.join("\n",
            "  train  --model DIR --data FILE --output DIR [--format pretokenized|alpaca|chat|classification|conll]",
            "         [--init-adapter DIR | --method lora|ia3|... --r N --alpha A --dropout P --target-modules a,b",
            "          --modules-to-save a,b]",
            "         [--task causal-lm|seq-cls|token-cls] [--optimizer adamw|sgd] [--lr X] [--max-steps N | --epochs N]",
            "         [--batch-size B] [--grad-accum K] [--warmup-steps N] [--scheduler constant|linear|cosine]",
            "         [--clip NORM] [--weight-decay W] [--eval-data FILE --eval-every N --metric M --patience P]",
            "         [--checkpoint-every N] [--resume CHECKPOINT] [--seed S] [--no-shuffle] [--metrics FILE]",
            "         [--on-bad-line stop|skip] [--max-length N] [--pack] [--device cpu|gpu] [--fp16]",
            "         trains the adapter and saves it to --output");

    private static final Set<String> VALUES = Set.of("--model", "--data", "--output", "--format", "--init-adapter",
            "--method", "--r", "--alpha", "--dropout", "--target-modules", "--modules-to-save", "--num-virtual-tokens", "--task", "--optimizer",
            "--lr", "--max-steps", "--epochs", "--batch-size", "--grad-accum", "--warmup-steps", "--scheduler", "--clip",
            "--weight-decay", "--eval-data", "--eval-every", "--metric", "--patience", "--checkpoint-every", "--resume",
            "--seed", "--metrics", "--on-bad-line", "--max-length", "--device", "--tokenizer", "--text-field",
            "--label-field", "--log-every");
    private static final Set<String> FLAGS = Set.of("--no-shuffle", "--fp16", "--pack");

    private TrainCommand() {}

    /**
     * Runs the command.
     *
     * @param argv the whole command line ({@code train ...})
     * @param out standard output
     */
    static void run(String[] argv, PrintStream out) {
        Args a = new Args("train", argv, 1, VALUES, FLAGS);
        Path modelDir = a.existingDir("--model");
        Path data = a.existingFile("--data");
        Path output = Path.of(a.required("--output"));
        String format = a.optional("--format") == null ? "pretokenized" : a.optional("--format");
        TaskType task = task(a.optional("--task"), format);
        boolean gpu = device(a.optional("--device"));
        boolean fp16 = a.flag("--fp16");
        if (fp16 && !gpu) {
            throw new CliException("train: --fp16 needs --device gpu (fp16 matmuls are not supported on the CPU)");
        }
        Path resume = a.optional("--resume") == null ? null : a.existingDir("--resume");
        Path initAdapter = a.optional("--init-adapter") == null ? null : a.existingDir("--init-adapter");
        if (initAdapter != null && a.optional("--method") != null) {
            throw new CliException("train: give either --init-adapter or --method, not both");
        }
        if (initAdapter == null && a.optional("--method") == null && resume == null) {
            throw new CliException("train: give --method (a new adapter) or --init-adapter DIR (an adapter to continue)");
        }
        if (a.optional("--modules-to-save") != null && a.optional("--method") == null) {
            throw new CliException("train: --modules-to-save applies to a new adapter made with --method (a loaded adapter"
                    + " keeps the modules_to_save of its adapter_config.json)");
        }
        BadLinePolicy policy = policy(a.optional("--on-bad-line"));
        int maxLength = intOpt(a, "--max-length", 0);
        try (TransformerModel model = Models.load(modelDir, gpu ? Device.gpu() : Device.cpu(),
                fp16 ? DataType.FLOAT16 : DataType.FLOAT32, task)) {
            Tokenizer tokenizer = format.equals("pretokenized") ? null : Tokenizer.load(
                    a.optional("--tokenizer") == null ? modelDir : Path.of(a.optional("--tokenizer")));
            try {
                Examples train = read(format, data, tokenizer, null, model, maxLength, policy, a);
                Examples eval = a.optional("--eval-data") == null ? null
                        : read(format, a.existingFile("--eval-data"), tokenizer, train.labelMap(), model, maxLength, policy, a);
                out.println("data: " + train.report());
                if (eval != null) {
                    out.println("eval data: " + eval.report());
                }
                PeftModel peft = PeftModel.wrap(model);
                if (initAdapter != null) {
                    peft.loadAdapter(initAdapter, PeftModel.DEFAULT, true);
                } else if (a.optional("--method") != null) {
                    peft.addAdapter(PeftModel.DEFAULT, PeftMethods.parse(configJson(a, task), "train options"));
                } else {
                    peft.loadAdapter(resume, PeftModel.DEFAULT, true);
                }
                out.println(peft.trainableReport());
                int padId = tokenizer == null ? 0 : tokenizer.padTokenId().orElse(tokenizer.eosTokenId().orElse(0));
                train(a, peft, train, eval, resume, output, padId, out);
            } finally {
                if (tokenizer != null) {
                    tokenizer.close();
                }
            }
        }
    }

    private static void train(Args a, PeftModel peft, List<Example> train, Examples eval, Path resume, Path output,
            int padId, PrintStream out) {
        double lr = doubleOpt(a, "--lr", 5e-5);
        double wd = doubleOpt(a, "--weight-decay", 0);
        String opt = a.optional("--optimizer") == null ? "adamw" : a.optional("--optimizer");
        String metric = a.optional("--metric") == null ? "loss" : a.optional("--metric");
        LrSchedule.Kind kind;
        try {
            kind = LrSchedule.Kind.parse(a.optional("--scheduler") == null ? "constant" : a.optional("--scheduler"));
        } catch (IllegalArgumentException e) {
            throw new CliException("train: --" + e.getMessage());
        }
        try (Optimizer optimizer = switch (opt) {
            case "adamw" -> AdamW.builder().weightDecay(wd).build();
            case "sgd" -> Sgd.builder().weightDecay(wd).build();
            default -> throw new CliException("train: --optimizer '" + opt + "': expected adamw or sgd");
        }) {
            PeftTrainer.Builder b = PeftTrainer.builder().setModel(peft).setTrainData(train).optOptimizer(optimizer)
                    .optLearningRate(lr).optScheduler(kind).optWarmupSteps(intOpt(a, "--warmup-steps", 0))
                    .optBatchSize(intOpt(a, "--batch-size", 8)).optGradientAccumulation(intOpt(a, "--grad-accum", 1))
                    .optEpochs(intOpt(a, "--epochs", 1)).optMaxGradNorm(doubleOpt(a, "--clip", 1.0))
                    .optShuffle(!a.flag("--no-shuffle")).optSeed(intOpt(a, "--seed", 42)).optOutputDir(output)
                    .optCheckpointEvery(intOpt(a, "--checkpoint-every", 0)).optLogEvery(intOpt(a, "--log-every", 10))
                    .optCollator(new Collator(padId, false)).optResumeFrom(resume);
            if (a.optional("--max-steps") != null) {
                b.optMaxSteps(intOpt(a, "--max-steps", 0));
            }
            if (a.optional("--metrics") != null) {
                b.optMetricsFile(Path.of(a.optional("--metrics")));
            }
            if (eval != null) {
                b.optEvalData(eval).optEvalEvery(intOpt(a, "--eval-every", 0))
                        .optEarlyStopping(metric, intOpt(a, "--patience", 0));
                if (eval.labelMap() != null && peft.model().task() == TaskType.TOKEN_CLS) {
                    b.optLabelNames(eval.labelMap().labels());
                }
            }
            try (PeftTrainer trainer = b.build()) {
                PeftTrainer.TrainResult r = trainer.train();
                peft.save(output);
                List<Double> l = r.losses();
                out.printf(Locale.ROOT, "trained %d steps%s; last loss %.6f%n", r.steps(), r.stoppedEarly() ? " (stopped early)" : "",
                        l.isEmpty() ? Double.NaN : l.get(l.size() - 1));
                if (!r.lastEval().isEmpty()) {
                    out.println("eval: " + r.lastEval() + "; best " + metric + " " + r.bestMetric() + " at step " + r.bestStep());
                }
                out.println("saved adapter to " + output);
            }
        }
    }

    private static Examples read(String format, Path file, Tokenizer tok, LabelMap labels, TransformerModel model, int maxLength,
            BadLinePolicy policy, Args a) {
        switch (format) {
            case "pretokenized":
                return PretokenizedData.forModel(model, maxLength, policy).read(file);
            case "alpaca":
            case "chat":
                if (a.flag("--pack") && maxLength <= 0) {
                    throw new CliException("train: --pack needs --max-length N (the length of a packed sequence)");
                }
                return InstructionData.builder(tok).maxLength(maxLength).pack(a.flag("--pack")).policy(policy).build()
                        .read(file);
            case "classification": {
                ClassificationData.Builder cb = ClassificationData.builder(tok).maxLength(maxLength).policy(policy);
                if (a.optional("--text-field") != null) {
                    cb.textField(a.optional("--text-field"));
                }
                if (a.optional("--label-field") != null) {
                    cb.labelField(a.optional("--label-field"));
                }
                if (labels != null) {
                    cb.labels(labels);
                }
                return cb.build().read(file);
            }
            case "conll":
                return ConllData.of(tok, maxLength, labels, policy).read(file);
            default:
                throw new CliException("train: --format '" + format + "': expected pretokenized, alpaca, chat, classification or conll");
        }
    }

    /** The adapter config from the method options, as the JSON HF PEFT would write. */
    private static String configJson(Args a, TaskType task) {
        ObjectNode n = PeftMethods.mapper().createObjectNode();
        String method = a.required("--method").toUpperCase(Locale.ROOT).replace('-', '_');
        n.put("peft_type", method);
        n.put("task_type", task == null ? null : task.name());
        if (a.optional("--r") != null) {
            n.put("r", intOpt(a, "--r", 0));
        }
        if (a.optional("--alpha") != null) {
            n.put("lora_alpha", doubleOpt(a, "--alpha", 0));
        }
        if (a.optional("--dropout") != null) {
            n.put("lora_dropout", doubleOpt(a, "--dropout", 0));
        }
        if (a.optional("--num-virtual-tokens") != null) {
            n.put("num_virtual_tokens", intOpt(a, "--num-virtual-tokens", 0));
        }
        list(a, "--target-modules", n, "target_modules");
        list(a, "--modules-to-save", n, "modules_to_save");
        return n.toString();
    }

    /** A comma-separated option as a JSON list of names (absent option: no key). */
    private static void list(Args a, String option, ObjectNode n, String key) {
        String v = a.optional(option);
        if (v == null) {
            return;
        }
        ArrayNode t = n.putArray(key);
        for (String s : v.split(",")) {
            if (s.isBlank()) {
                throw new CliException("train: " + option + " '" + v + "' has an empty name; expected names separated by commas");
            }
            t.add(s.trim());
        }
    }

    private static TaskType task(String name, String format) {
        if (name == null) {
            return switch (format) {
                case "classification" -> TaskType.SEQ_CLS;
                case "conll" -> TaskType.TOKEN_CLS;
                default -> null;
            };
        }
        return switch (name) {
            case "causal-lm" -> TaskType.CAUSAL_LM;
            case "seq-cls" -> TaskType.SEQ_CLS;
            case "token-cls" -> TaskType.TOKEN_CLS;
            default -> throw new CliException("train: --task '" + name + "': expected causal-lm, seq-cls or token-cls");
        };
    }

    private static boolean device(String name) {
        if (name == null) {
            return Engine.getInstance().getGpuCount() > 0;
        }
        return switch (name) {
            case "cpu" -> false;
            case "gpu" -> {
                if (Engine.getInstance().getGpuCount() == 0) {
                    throw new CliException("train: --device gpu but no GPU is visible to libtorch");
                }
                yield true;
            }
            default -> throw new CliException("train: --device '" + name + "': expected cpu or gpu");
        };
    }

    private static BadLinePolicy policy(String name) {
        if (name == null || name.equals("stop")) {
            return BadLinePolicy.STOP;
        }
        if (name.equals("skip")) {
            return BadLinePolicy.SKIP;
        }
        throw new CliException("train: --on-bad-line '" + name + "': expected stop or skip");
    }

    private static int intOpt(Args a, String key, int def) {
        String v = a.optional(key);
        if (v == null) {
            return def;
        }
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new CliException("train: " + key + " '" + v + "' is not an integer");
        }
    }

    private static double doubleOpt(Args a, String key, double def) {
        String v = a.optional(key);
        if (v == null) {
            return def;
        }
        try {
            return Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new CliException("train: " + key + " '" + v + "' is not a number");
        }
    }
}
