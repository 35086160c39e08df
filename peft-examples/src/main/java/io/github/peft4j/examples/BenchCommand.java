package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.Losses;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j bench}: times full LoRA training steps (forward, causal-LM loss, backward, AdamW) on randomly
 * initialised models, fp32 on the CPU, batch 4, r 8, alpha 16, no dropout anywhere, after 3 warm-up steps. The
 * same workload in Python (transformers + peft) is {@code peft-examples/src/main/python/bench_hf.py};
 * {@code scripts/bench.sh} runs both and prints the comparison.
 *
 * The options are those of {@code peft4j bench --help}.
 *
 * Peak RSS is the process's high-water mark, {@code VmHWM} in {@code /proc/self/status} (Linux only; -1 elsewhere),
 * so with several shapes in one run it is the maximum so far.
 */
@Command(name = "bench", sortOptions = false, separator = " ",
        description = {"Times LoRA training steps (forward, backward, AdamW) on randomly initialised models.",
            "",
            "Each step is forward, causal-LM loss, backward and AdamW, fp32 on the CPU, batch 4, LoRA r 8 alpha 16, no"
                + " dropout, after --warmup untimed steps. Shapes: llama-tiny and gpt2-tiny (2 layers, hidden 64, vocab"
                + " 128, seq 32), llama-small (12 layers, hidden 768, vocab 50257, seq 128) and gpt2-small (GPT-2 124M,"
                + " seq 128). --json prints shape, ms_per_step, tokens_per_s, peak_rss_mb (VmHWM, the maximum so far),"
                + " steps, threads, batch, seq, trainable_params, last_loss. The Python counterpart is"
                + " peft-examples/src/main/python/bench_hf.py (scripts/bench.sh runs both), measured figures in"
                + " docs/benchmarks.md. Java API: BenchCommand.measure."},
        footer = {"Examples:",
            "  $ ./peft4j bench --shape llama-tiny,gpt2-tiny --steps 20",
            "  $ ./peft4j bench --shape all --json --threads 2 --profile /tmp/bench-trace.json"})
public final class BenchCommand implements Callable<Integer> {
    /** Batch size of every shape. */
    public static final int BATCH = 4;
    /** LoRA rank. */
    public static final int RANK = 8;
    /** LoRA alpha. */
    public static final int ALPHA = 16;
    /** Learning rate of the AdamW steps. */
    public static final double LR = 1e-4;
    /** Seed of the weights and of the token ids. */
    public static final int SEED = 1234;

    /** A benchmarked model shape (the Python script defines the same four). */
    public enum BenchShape {
        /** Llama, 2 layers, hidden 64, 4 heads, vocab 128, seq 32, LoRA on q_proj and v_proj. */
        LLAMA_TINY("llama-tiny", 32, 200, List.of("q_proj", "v_proj"), "{\"model_type\":\"llama\",\"hidden_size\":64,"
                + "\"intermediate_size\":256,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
                + "\"vocab_size\":128,\"max_position_embeddings\":128,\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":false}"),
        /** GPT-2, 2 layers, hidden 64, 4 heads, vocab 128, seq 32, LoRA on c_attn. */
        GPT2_TINY("gpt2-tiny", 32, 200, List.of("c_attn"), "{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":2,"
                + "\"n_head\":4,\"vocab_size\":128,\"n_positions\":128,\"resid_pdrop\":0,\"embd_pdrop\":0,\"attn_pdrop\":0}"),
        /** Llama, 12 layers, hidden 768, 12 heads, intermediate 3072, vocab 50257, seq 128. */
        LLAMA_SMALL("llama-small", 128, 5, List.of("q_proj", "v_proj"), "{\"model_type\":\"llama\",\"hidden_size\":768,"
                + "\"intermediate_size\":3072,\"num_hidden_layers\":12,\"num_attention_heads\":12,\"num_key_value_heads\":12,"
                + "\"vocab_size\":50257,\"max_position_embeddings\":2048,\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":false}"),
        /** GPT-2 124M, seq 128. */
        GPT2_SMALL("gpt2-small", 128, 5, List.of("c_attn"), "{\"model_type\":\"gpt2\",\"n_embd\":768,\"n_layer\":12,"
                + "\"n_head\":12,\"vocab_size\":50257,\"n_positions\":1024,\"resid_pdrop\":0,\"embd_pdrop\":0,\"attn_pdrop\":0}");

        final String id;
        final int seqLen;
        final int defaultSteps;
        final List<String> targets;
        final String config;

        BenchShape(String id, int seqLen, int defaultSteps, List<String> targets, String config) {
            this.id = id;
            this.seqLen = seqLen;
            this.defaultSteps = defaultSteps;
            this.targets = targets;
            this.config = config;
        }

        /** @return the name used on the command line */
        public String id() {
            return id;
        }

        /** @return the sequence length */
        public int seqLen() {
            return seqLen;
        }

        /** @return the model config */
        public HfConfig config() {
            try {
                return new HfConfig((ObjectNode) new ObjectMapper().readTree(config), "bench shape " + id);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        static BenchShape of(String id) {
            for (BenchShape s : values()) {
                if (s.id.equals(id)) {
                    return s;
                }
            }
            throw new IllegalArgumentException("unknown bench shape '" + id + "'; expected one of "
                    + String.join(", ", Arrays.stream(values()).map(BenchShape::id).toList()));
        }
    }

    /**
     * One shape's figures.
     *
     * @param shape the shape
     * @param steps timed steps
     * @param msPerStep mean wall time of a timed step
     * @param tokensPerS batch tokens per second
     * @param peakRssMb peak resident set size so far (MiB), -1 if unknown
     * @param threads libtorch intra-op threads
     * @param trainableParams number of trainable parameters
     * @param lastLoss the loss of the last step
     */
    public record Result(BenchShape shape, int steps, double msPerStep, double tokensPerS, double peakRssMb, int threads,
            long trainableParams, double lastLoss) {
        /** @return the result as one JSON line */
        public String json() {
            return String.format(Locale.ROOT, "{\"impl\":\"peft4j\",\"shape\":\"%s\",\"ms_per_step\":%.3f,"
                    + "\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,\"steps\":%d,\"threads\":%d,\"batch\":%d,\"seq\":%d,"
                    + "\"trainable_params\":%d,\"last_loss\":%.6f}", shape.id, msPerStep, tokensPerS, peakRssMb, steps,
                    threads, BATCH, shape.seqLen, trainableParams, lastLoss);
        }
    }

    @ParentCommand
    Peft4jCli root;

    @Option(names = "--shape", required = true, split = ",", paramLabel = "SHAPE", converter = Choices.BenchShapes.class,
            completionCandidates = Choices.BenchShapes.class,
            description = "Shapes to time, comma-separated: ${COMPLETION-CANDIDATES} (all = every shape).")
    List<String> shapeNames;

    @Option(names = "--steps", paramLabel = "N", converter = Converters.Positive.class,
            description = "Timed steps per shape (integer >= 1; default: 200 for the tiny shapes, 5 for the small ones).")
    Integer steps;

    @Option(names = "--warmup", paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Untimed steps first (integer >= 0; default: ${DEFAULT-VALUE}).")
    int warmup = 3;

    @Option(names = "--threads", paramLabel = "N", converter = Converters.Positive.class,
            description = "libtorch intra-op threads (integer >= 1; default: libtorch's).")
    Integer threads;

    @Option(names = "--profile", paramLabel = "FILE",
            description = "Write libtorch's profiler trace of the timed steps here (Chrome trace JSON).")
    Path profile;

    @Option(names = "--json", description = "Print one JSON object per shape instead of the table.")
    boolean json;

    @Mixin
    HelpOption help;

    BenchCommand() {}

    /**
     * Runs the benchmark without the CLI dispatcher.
     *
     * @param args the options of {@code peft4j bench}
     */
    public static void main(String[] args) {
        String[] all = new String[args.length + 1];
        all[0] = "bench";
        System.arraycopy(args, 0, all, 1, args.length);
        System.exit(Peft4jCli.run(all, System.out, System.err));
    }

    @Override
    public Integer call() {
        PrintStream out = root.out;
        List<BenchShape> shapes = new ArrayList<>();
        for (String s : shapeNames) {
            if (s.equals("all")) {
                shapes.addAll(List.of(BenchShape.values()));
            } else {
                shapes.add(BenchShape.of(s));
            }
        }
        Engine.getInstance(); // loads libtorch before any JniUtils call
        if (threads != null) {
            JniUtils.setNumThreads(threads);
        }
        if (!json) {
            out.printf(Locale.ROOT, "%-12s %6s %12s %12s %12s %8s%n", "shape", "steps", "ms/step", "tokens/s",
                    "peak RSS MB", "threads");
        }
        for (BenchShape s : shapes) {
            Result r = measure(s, steps == null ? s.defaultSteps : steps, warmup, profile);
            if (json) {
                out.println(r.json());
            } else {
                out.printf(Locale.ROOT, "%-12s %6d %12.2f %12.1f %12.1f %8d%n", s.id, r.steps, r.msPerStep, r.tokensPerS,
                        r.peakRssMb, r.threads);
            }
            out.flush();
        }
        return 0;
    }

    /**
     * Builds the shape's random model with a LoRA adapter and times training steps.
     *
     * @param shape the shape
     * @param steps timed steps
     * @param warmup untimed steps first
     * @param profile if not null, a Chrome trace of the timed steps from libtorch's profiler is written there
     * @return the figures
     */
    public static Result measure(BenchShape shape, int steps, int warmup, Path profile) {
        Engine.getInstance().setRandomSeed(SEED);
        try (TransformerModel model = Models.random(shape.config(), Device.cpu(), DataType.FLOAT32, null);
                NDManager m = NDManager.newBaseManager(Device.cpu());
                AdamW opt = AdamW.builder().build()) {
            PeftModel peft = PeftModel.wrap(model);
            // GPT-2's Conv1D stores (in, out): fan_in_fan_out = true, as HF PEFT sets it (with a warning)
            peft.addAdapter(PeftModel.DEFAULT, new LoraConfig().r(RANK).loraAlpha(ALPHA).loraDropout(0)
                    .fanInFanOut(shape.config.contains("gpt2")).targetModules(shape.targets.toArray(String[]::new)));
            Map<String, Param> trainable = new LinkedHashMap<>(peft.trainableParameters());
            long trainableParams = trainable.values().stream().mapToLong(Param::numel).sum();
            double loss = Double.NaN;
            for (int i = 0; i < warmup; i++) {
                loss = step(peft, m, trainable, opt, shape);
            }
            if (profile != null) {
                JniUtils.startProfile(false, false, false);
            }
            long t0 = System.nanoTime();
            for (int i = 0; i < steps; i++) {
                loss = step(peft, m, trainable, opt, shape);
            }
            long elapsed = System.nanoTime() - t0;
            if (profile != null) {
                JniUtils.stopProfile(profile.toAbsolutePath().toString());
            }
            double ms = elapsed / 1e6 / steps;
            return new Result(shape, steps, ms, BATCH * (double) shape.seqLen * 1000.0 / ms, peakRssMb(),
                    JniUtils.getNumThreads(), trainableParams, loss);
        }
    }

    /** One training step in its own scope; returns the loss (reading it waits for the step to finish). */
    private static double step(PeftModel peft, NDManager m, Map<String, Param> trainable, AdamW opt, BenchShape shape) {
        try (NDScope scope = new NDScope()) {
            // libtorch's generator (seeded once per shape), as torch.randint on the Python side: no Java buffer
            NDArray input = m.randomInteger(0, peft.model().vocabSize(), new Shape(BATCH, shape.seqLen), DataType.INT64);
            NDArray loss;
            try (GradientCollector gc = Engine.getInstance().newGradientCollector()) {
                NDArray logits = peft.forward(ModelInput.of(input, null)).logits();
                loss = Losses.causalLm(logits, input);
                gc.backward(loss);
            }
            opt.step(trainable, LR);
            return loss.getFloat();
        }
    }

    /**
     * The process's peak resident set size from {@code VmHWM} in {@code /proc/self/status} (Linux).
     *
     * @return MiB, or -1 where the file does not exist
     */
    public static double peakRssMb() {
        Path status = Path.of("/proc/self/status");
        if (!Files.isReadable(status)) {
            return -1;
        }
        try {
            for (String line : Files.readAllLines(status)) {
                if (line.startsWith("VmHWM:")) {
                    String[] f = line.substring(6).trim().split("\\s+"); // "<n> kB"
                    return Long.parseLong(f[0]) / 1024.0;
                }
            }
            return -1;
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }
}
