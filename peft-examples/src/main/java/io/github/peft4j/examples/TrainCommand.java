package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.adapters.bottleneck.BottleneckAdapters;
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
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code peft4j train}: fine-tunes an adapter on a model directory with {@link PeftTrainer} and saves it to
 * {@code --output} (with {@code checkpoint-<step>/}, {@code best/}, {@code metrics.jsonl} and {@code curves.png}).
 */
@Command(name = "train", sortOptions = false, separator = " ",
        description = {"Fine-tunes an adapter (new, or loaded to continue) and saves it in the HF PEFT format (or"
                + " AdapterHub's, --save-format adapterhub).",
            "",
            "Saves the adapter to --output, next to checkpoint-<step>/ (--checkpoint-every), best/ (the best evaluation"
                + " so far), metrics.jsonl and curves.png. Data formats: pretokenized ({\"input_ids\": [...], \"labels\":"
                + " [...]} lines), alpaca and chat (instruction records, tokenized with the model's tokenizer),"
                + " classification ({\"text\": ..., \"label\": ...} lines), conll (token-per-line NER). Java API:"
                + " PeftModel.addAdapter or loadAdapter, then PeftTrainer.builder()...build().train(); all options, the"
                + " file layout and real output are in docs/training.md."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/train-parity/llama_lora_sgd",
            "  $ ./peft4j train --model $F/base --data $F/data.jsonl --method lora --r 4 --alpha 8 --target-modules q_proj,v_proj \\",
            "        --lr 0.01 --max-steps 4 --batch-size 2 --log-every 0 --device cpu --output /tmp/gen/run",
            "  data: peft-core/src/test/resources/fixtures/train-parity/llama_lora_sgd/data.jsonl: 6 records, 6 examples, 0 skipped, 0 truncated",
            "  trainable params: 1,792 || all params: 92,224 || trainable%: 1.9431",
            "  trained 4 steps; last loss ...",
            "  saved adapter to /tmp/gen/run",
            "  $ ./peft4j train --model $F/base --init-adapter $F/adapter --data $F/data.jsonl --optimizer sgd --lr 0.1 \\",
            "        --max-steps 5 --batch-size 2 --no-shuffle --clip 0.6 --log-every 0 --device cpu --output /tmp/gen/sgd",
            "  trained 5 steps; last loss ...",
            "  (the losses of these SGD steps are HF PEFT's, TrainCommandTest; training.md has the full story)",
            "  $ ./peft4j train --model $F/base --data $F/data.jsonl --method lora --optimizer adam --output /tmp/gen/x",
            "  peft4j: train: --optimizer 'adam': expected adamw or sgd"})
final class TrainCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory.")
    Path model;

    @Option(names = "--data", required = true, paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "Training data in the --format.")
    Path data;

    @Option(names = "--output", required = true, paramLabel = "DIR",
            description = "Where the adapter, checkpoints, metrics.jsonl and curves.png go.")
    Path output;

    @Option(names = "--save-format", paramLabel = "FORMAT", converter = Choices.SaveFormats.class,
            completionCandidates = Choices.SaveFormats.class, defaultValue = "hf",
            description = "Layout of the adapter saved to --output: hf (HF PEFT's, peft4j's own) or adapterhub (AdapterHub's"
                    + " save_adapter: adapter_config.json, adapter.safetensors and, for classification, the head files;"
                    + " bottleneck and union adapters only). checkpoint-<step>/ and best/ stay hf (default: ${DEFAULT-VALUE}).")
    String saveFormat;

    @Option(names = "--format", paramLabel = "FORMAT", converter = Choices.Formats.class, completionCandidates = Choices.Formats.class,
            description = "Data format: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String format = "pretokenized";

    @Option(names = "--tokenizer", paramLabel = "PATH", converter = Converters.ExistingPath.class,
            description = "tokenizer.json or its directory, for the text formats (default: the model directory).")
    Path tokenizer;

    @Option(names = "--text-field", paramLabel = "NAME", description = "classification: the text field of a record (default: text).")
    String textField;

    @Option(names = "--label-field", paramLabel = "NAME", description = "classification: the label field of a record (default: label).")
    String labelField;

    @Option(names = "--max-length", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Truncate (or, with --pack, pack) to N tokens (integer >= 0, 0 = no limit; default: ${DEFAULT-VALUE}).")
    int maxLength;

    @Option(names = "--pack", description = "alpaca/chat: pack several records into each --max-length sequence.")
    boolean pack;

    @Option(names = "--on-bad-line", paramLabel = "POLICY", converter = Choices.BadLines.class,
            completionCandidates = Choices.BadLines.class,
            description = "A malformed data line: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}; skip counts and reports them).")
    String onBadLine = "stop";

    @Option(names = "--init-adapter", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Continue training this adapter (instead of --method).")
    Path initAdapter;

    @Option(names = "--method", paramLabel = "METHOD", converter = MethodName.class, completionCandidates = MethodName.class,
            description = "A new adapter of this PEFT method: ${COMPLETION-CANDIDATES}.")
    String method;

    @Option(names = "--r", paramLabel = "N", converter = Converters.Positive.class,
            description = "LoRA rank (integer >= 1; default: the method's, 8 for LoRA).")
    Integer r;

    @Option(names = "--alpha", paramLabel = "X", converter = Converters.PositiveNum.class,
            description = "LoRA alpha (number > 0; default: the method's, 8 for LoRA).")
    Double alpha;

    @Option(names = "--dropout", paramLabel = "P", converter = Converters.DropProbability.class,
            description = "LoRA dropout (number in [0, 1); default: the method's, 0).")
    Double dropout;

    @Option(names = "--target-modules", paramLabel = "NAME[,NAME...]",
            description = "Modules the method adapts, by name suffix (default: the method's defaults for the architecture).")
    String targetModules;

    @Option(names = "--modules-to-save", paramLabel = "NAME[,NAME...]",
            description = "Modules trained fully and saved with the new adapter (e.g. classifier, lm_head).")
    String modulesToSave;

    @Option(names = "--num-virtual-tokens", paramLabel = "N", converter = Converters.Positive.class,
            description = "Prompt learning: virtual tokens (integer >= 1).")
    Integer numVirtualTokens;

    @Option(names = "--num-experts", paramLabel = "N", converter = Converters.Positive.class,
            description = "moe-lora: LoRA experts per adapted layer (integer >= 1; default: the method's, 4).")
    Integer numExperts;

    @Option(names = "--top-k", paramLabel = "K", converter = Converters.Positive.class,
            description = "moe-lora: experts each token uses (integer in [1, --num-experts]; default: the method's, 2).")
    Integer topK;

    @Option(names = "--aux-loss-coef", paramLabel = "X", converter = Converters.NonNegativeNum.class,
            description = "moe-lora: weight of the load-balancing loss (number >= 0; default: the method's, 0.01).")
    Double auxLossCoef;

    @Option(names = "--task", paramLabel = "TASK", converter = Choices.Tasks.class, completionCandidates = Choices.Tasks.class,
            description = "The model head: ${COMPLETION-CANDIDATES} (default: seq-cls for classification, token-cls for"
                    + " conll, else the model's).")
    String task;

    @Option(names = "--optimizer", paramLabel = "OPTIMIZER", converter = Choices.Optimizers.class,
            completionCandidates = Choices.Optimizers.class,
            description = "${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String optimizer = "adamw";

    @Option(names = "--lr", paramLabel = "X", converter = Converters.NonNegativeNum.class,
            description = "Peak learning rate (number >= 0; default: ${DEFAULT-VALUE}).")
    double lr = 5e-5;

    @Option(names = "--weight-decay", paramLabel = "X", converter = Converters.NonNegativeNum.class,
            description = "Decoupled weight decay (number >= 0; default: ${DEFAULT-VALUE}).")
    double weightDecay;

    @Option(names = "--scheduler", paramLabel = "SCHEDULE", converter = Choices.Schedulers.class,
            completionCandidates = Choices.Schedulers.class,
            description = "Learning-rate schedule after the warm-up: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String scheduler = "constant";

    @Option(names = "--warmup-steps", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Linear warm-up steps (integer >= 0; default: ${DEFAULT-VALUE}).")
    int warmupSteps;

    @Option(names = "--max-steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Stop after N optimizer steps (integer >= 1; default: the --epochs).")
    Integer maxSteps;

    @Option(names = "--epochs", paramLabel = "N", converter = Converters.Positive.class,
            description = "Passes over the data (integer >= 1; default: ${DEFAULT-VALUE}).")
    int epochs = 1;

    @Option(names = "--batch-size", paramLabel = "B", converter = Converters.Positive.class,
            description = "Examples per micro-batch (integer >= 1; default: ${DEFAULT-VALUE}).")
    int batchSize = 8;

    @Option(names = "--grad-accum", paramLabel = "K", converter = Converters.Positive.class,
            description = "Micro-batches per optimizer step (integer >= 1; default: ${DEFAULT-VALUE}).")
    int gradAccum = 1;

    @Option(names = "--clip", paramLabel = "NORM", converter = Converters.NonNegativeNum.class,
            description = "Clip the global gradient norm (number >= 0, 0 = off; default: ${DEFAULT-VALUE}).")
    double clip = 1.0;

    @Option(names = "--gradient-checkpointing", description = "Recompute each transformer block in backward instead of"
            + " keeping its activations (the same gradients; memory of one block's activations instead of all, for"
            + " about one more forward pass of compute; with a 4-bit base also no dequantised weights held).")
    boolean gradientCheckpointing;

    @Option(names = "--eval-data", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "Evaluation data in the --format (evaluated every --eval-every steps and at the end).")
    Path evalData;

    @Option(names = "--eval-every", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Evaluate every N steps (integer >= 0, 0 = at the end only; default: ${DEFAULT-VALUE}).")
    int evalEvery;

    @Option(names = "--metric", paramLabel = "NAME",
            description = "Metric that picks best/ and early stopping: loss, perplexity, accuracy, f1, ... (default: ${DEFAULT-VALUE}).")
    String metric = "loss";

    @Option(names = "--patience", paramLabel = "P", converter = Converters.NonNegative.class,
            description = "Stop after P evaluations without improvement (integer >= 0, 0 = never; default: ${DEFAULT-VALUE}).")
    int patience;

    @Option(names = "--checkpoint-every", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Write checkpoint-<step>/ every N steps (integer >= 0, 0 = none; default: ${DEFAULT-VALUE}).")
    int checkpointEvery;

    @Option(names = "--resume", paramLabel = "CHECKPOINT", converter = Converters.ExistingDir.class,
            description = "Resume from a checkpoint-<step>/ directory (adapter, optimizer state, data position).")
    Path resume;

    @Option(names = "--seed", paramLabel = "S", description = "Seed of shuffling, dropout and initialisation (integer; default: ${DEFAULT-VALUE}).")
    long seed = 42;

    @Option(names = "--no-shuffle", description = "Keep the data order.")
    boolean noShuffle;

    @Option(names = "--metrics", paramLabel = "FILE", description = "Write the metrics JSON lines here (default: --output/metrics.jsonl).")
    Path metrics;

    @Option(names = "--log-every", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Print progress every N steps (integer >= 0, 0 = off; default: ${DEFAULT-VALUE}).")
    int logEvery = 10;

    @Option(names = "--device", paramLabel = "DEVICE", converter = Choices.Devices.class, completionCandidates = Choices.Devices.class,
            description = "${COMPLETION-CANDIDATES} (default: gpu when libtorch sees one, else cpu).")
    String device;

    @Option(names = "--fp16", description = "Load the model in float16 (mixed-precision training with loss scaling).")
    boolean fp16;

    @Mixin
    QuantizeOptions quantize;

    @Mixin
    HelpOption help;

    private static final String ADAPTERHUB = "adapterhub";

    /** {@code --method}: a registered PEFT type, written lower-case with '-' ({@code prompt-tuning}). */
    static final class MethodName extends Choices {
        MethodName() {
            super(PeftMethods.types().stream().sorted().map(t -> t.toLowerCase(Locale.ROOT).replace('_', '-')).toList());
        }

        @Override
        public String convert(String value) {
            String v = value.toLowerCase(Locale.ROOT).replace('_', '-');
            try {
                return super.convert(v);
            } catch (TypeConversionException e) {
                throw new TypeConversionException("'" + value + "': expected one of " + String.join(", ", this));
            }
        }
    }

    @Override
    public Integer call() {
        TaskType taskType = task(task, format);
        boolean gpu = device == null ? Engine.getInstance().getGpuCount() > 0 : device.equals("gpu");
        if (gpu && Engine.getInstance().getGpuCount() == 0) {
            throw new CliException("train: --device gpu but no GPU is visible to libtorch");
        }
        if (initAdapter != null && method != null) {
            throw new CliException("train: give either --init-adapter or --method, not both");
        }
        if (initAdapter == null && method == null && resume == null) {
            throw new CliException("train: give --method (a new adapter) or --init-adapter DIR (an adapter to continue)");
        }
        if (modulesToSave != null && method == null) {
            throw new CliException("train: --modules-to-save applies to a new adapter made with --method (a loaded adapter"
                    + " keeps the modules_to_save of its adapter_config.json)");
        }
        if (pack && maxLength <= 0 && (format.equals("alpaca") || format.equals("chat"))) {
            throw new CliException("train: --pack needs --max-length N (the length of a packed sequence)");
        }
        if ((numExperts != null || topK != null || auxLossCoef != null) && !"moe-lora".equals(method)) {
            throw new CliException("train: --num-experts, --top-k and --aux-loss-coef apply to a new --method moe-lora adapter");
        }
        String config = method == null ? null : configJson(taskType); // checks the name lists before loading
        BadLinePolicy policy = onBadLine.equals("skip") ? BadLinePolicy.SKIP : BadLinePolicy.STOP;
        PrintStream out = root.out;
        io.github.peft4j.model.Quantization q = quantize.quantization("train"); // QLoRA: a 4-bit base
        ai.djl.engine.Engine.getInstance().setRandomSeed((int) seed); // initialisation: a new head and a new adapter
        try (TransformerModel m = Models.load(model, io.github.peft4j.model.HfConfig.read(model),
                gpu ? Device.gpu() : Device.cpu(), fp16 ? DataType.FLOAT16 : DataType.FLOAT32, taskType, null, q)) {
            Tokenizer tok = format.equals("pretokenized") ? null : Tokenizer.load(tokenizer == null ? model : tokenizer);
            try {
                PeftModel peft = PeftModel.wrap(m);
                if (initAdapter != null) {
                    peft.loadAdapter(initAdapter, PeftModel.DEFAULT, true);
                } else if (config != null) {
                    peft.addAdapter(PeftModel.DEFAULT, PeftMethods.parse(config, "train options"));
                } else {
                    peft.loadAdapter(resume, PeftModel.DEFAULT, true);
                }
                String noHub = ADAPTERHUB.equals(saveFormat) ? BottleneckAdapters.whyNotAdapterHub(peft, PeftModel.DEFAULT) : null;
                if (noHub != null) { // before any training
                    throw new CliException("train: --save-format adapterhub: " + noHub + "; use --save-format hf");
                }
                Examples train = read(data, tok, null, m, policy);
                Examples eval = evalData == null ? null : read(evalData, tok, train.labelMap(), m, policy);
                out.println("data: " + train.report());
                if (eval != null) {
                    out.println("eval data: " + eval.report());
                }
                out.println(peft.trainableReport());
                int padId = tok == null ? 0 : tok.padTokenId().orElse(tok.eosTokenId().orElse(0));
                train(peft, train, eval, padId, out);
            } finally {
                if (tok != null) {
                    tok.close();
                }
            }
        }
        return 0;
    }

    private void train(PeftModel peft, List<Example> train, Examples eval, int padId, PrintStream out) {
        LrSchedule.Kind kind = LrSchedule.Kind.parse(scheduler);
        try (Optimizer opt = optimizer.equals("sgd") ? Sgd.builder().weightDecay(weightDecay).build()
                : AdamW.builder().weightDecay(weightDecay).build()) {
            PeftTrainer.Builder b = PeftTrainer.builder().setModel(peft).setTrainData(train).optOptimizer(opt)
                    .optLearningRate(lr).optScheduler(kind).optWarmupSteps(warmupSteps).optBatchSize(batchSize)
                    .optGradientAccumulation(gradAccum).optEpochs(epochs).optMaxGradNorm(clip).optShuffle(!noShuffle)
                    .optGradientCheckpointing(gradientCheckpointing)
                    .optSeed(seed).optOutputDir(output).optCheckpointEvery(checkpointEvery).optLogEvery(logEvery)
                    .optCollator(new Collator(padId, false)).optResumeFrom(resume);
            if (maxSteps != null) {
                b.optMaxSteps(maxSteps);
            }
            if (metrics != null) {
                b.optMetricsFile(metrics);
            }
            if (eval != null) {
                b.optEvalData(eval).optEvalEvery(evalEvery).optEarlyStopping(metric, patience);
                if (eval.labelMap() != null && peft.model().task() == TaskType.TOKEN_CLS) {
                    b.optLabelNames(eval.labelMap().labels());
                }
            }
            try (PeftTrainer trainer = b.build()) {
                PeftTrainer.TrainResult res = trainer.train();
                if (ADAPTERHUB.equals(saveFormat)) {
                    BottleneckAdapters.saveAdapterHub(peft, PeftModel.DEFAULT, output);
                } else {
                    peft.save(output);
                }
                List<Double> l = res.losses();
                out.printf(Locale.ROOT, "trained %d steps%s; last loss %.6f%n", res.steps(), res.stoppedEarly() ? " (stopped early)" : "",
                        l.isEmpty() ? Double.NaN : l.get(l.size() - 1));
                if (!res.lastEval().isEmpty()) {
                    out.println("eval: " + res.lastEval() + "; best " + metric + " " + res.bestMetric() + " at step " + res.bestStep());
                }
                out.println("saved adapter to " + output + (ADAPTERHUB.equals(saveFormat) ? " (AdapterHub layout, adapter name '"
                        + PeftModel.DEFAULT + "')" : ""));
            }
        }
    }

    private Examples read(Path file, Tokenizer tok, LabelMap labels, TransformerModel model, BadLinePolicy policy) {
        return readExamples(format, file, tok, labels, model, maxLength, pack, textField, labelField, policy);
    }

    /**
     * Reads a data file in one of the {@code --format}s (also used by {@code lorahub}).
     *
     * @param format the format name
     * @param file the file
     * @param tok the tokenizer (null for pretokenized)
     * @param labels the label map to reuse, or null
     * @param model the model (pretokenized records fit its head)
     * @param maxLength truncation (0 = none)
     * @param pack alpaca/chat packing
     * @param textField classification text field, or null for the default
     * @param labelField classification label field, or null for the default
     * @param policy bad-line policy
     * @return the examples
     */
    static Examples readExamples(String format, Path file, Tokenizer tok, LabelMap labels, TransformerModel model,
            int maxLength, boolean pack, String textField, String labelField, BadLinePolicy policy) {
        switch (format) {
            case "pretokenized": // causal-LM records, or a class per record / per token for the model's head
                return PretokenizedData.forModel(model, maxLength, policy).read(file);
            case "alpaca":
            case "chat":
                return InstructionData.builder(tok).maxLength(maxLength).pack(pack).policy(policy).build().read(file);
            case "classification": {
                ClassificationData.Builder cb = ClassificationData.builder(tok).maxLength(maxLength).policy(policy);
                if (textField != null) {
                    cb.textField(textField);
                }
                if (labelField != null) {
                    cb.labelField(labelField);
                }
                if (labels != null) {
                    cb.labels(labels);
                }
                return cb.build().read(file);
            }
            case "conll":
                return ConllData.of(tok, maxLength, labels, policy).read(file);
            default:
                throw new IllegalStateException("format " + format); // the option's converter admits no other
        }
    }

    /** The adapter config from the method options, as the JSON HF PEFT would write. */
    private String configJson(TaskType taskType) {
        ObjectNode n = PeftMethods.mapper().createObjectNode();
        n.put("peft_type", method.toUpperCase(Locale.ROOT).replace('-', '_'));
        n.put("task_type", taskType == null ? null : taskType.name());
        if (r != null) {
            n.put("r", r);
        }
        if (alpha != null) {
            n.put("lora_alpha", alpha);
        }
        if (dropout != null) {
            n.put("lora_dropout", dropout);
        }
        if (numVirtualTokens != null) {
            n.put("num_virtual_tokens", numVirtualTokens);
        }
        if (numExperts != null) {
            n.put("num_experts", numExperts);
        }
        if (topK != null) {
            n.put("top_k", topK);
        }
        if (auxLossCoef != null) {
            n.put("router_aux_loss_coef", auxLossCoef);
        }
        list("--target-modules", targetModules, n, "target_modules");
        list("--modules-to-save", modulesToSave, n, "modules_to_save");
        return n.toString();
    }

    /** A comma-separated option as a JSON list of names (absent option: no key). */
    private static void list(String option, String v, ObjectNode n, String key) {
        if (v == null) {
            return;
        }
        ArrayNode t = n.putArray(key);
        for (String s : v.split(",", -1)) {
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
            default -> TaskType.TOKEN_CLS;
        };
    }
}
