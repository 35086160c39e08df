package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.data.Example;
import io.github.peft4j.lora.LoraConfig;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.LlamaModel;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.Quantization;
import io.github.peft4j.model.RandomWeights;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.model.WeightSource;
import io.github.peft4j.nn.quant.FourBitQuantizer;
import io.github.peft4j.nn.quant.FourBitType;
import io.github.peft4j.nn.quant.FourBitWeights;
import io.github.peft4j.nn.quant.Linear4bit;
import io.github.peft4j.nn.Param;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.AdamW;
import io.github.peft4j.train.PeftTrainer;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j bench}: times full training steps ({@link PeftTrainer}: forward, causal-LM loss, backward, AdamW) on
 * randomly initialised models, fp32 on the CPU, batch 4, LoRA r 8, alpha 16, no dropout anywhere, after 3 warm-up
 * steps, for LoRA on the dense base or QLoRA on an NF4 base, with or without gradient checkpointing. The same workload
 * in Python (transformers + peft + bitsandbytes) is {@code peft-examples/src/main/python/bench_hf.py};
 * {@code scripts/bench.sh} runs both and prints the comparison.
 *
 * The options are those of {@code peft4j bench --help}.
 *
 * Peak RSS is the process's high-water mark, {@code VmHWM} in {@code /proc/self/status} (Linux only; -1 elsewhere),
 * so with several shapes or configs in one run it is the maximum so far.
 */
@Command(name = "bench", sortOptions = false, separator = " ",
        description = {"Times LoRA and QLoRA training steps (forward, backward, AdamW) on randomly initialised models.",
            "",
            "Each step is a PeftTrainer step: forward, causal-LM loss, backward and AdamW, fp32 on the CPU, batch 4, LoRA"
                + " r 8 alpha 16, no dropout, after --warmup untimed steps. Shapes: llama-tiny and gpt2-tiny (2 layers,"
                + " hidden 64, vocab 128, seq 32), llama-small (12 layers, hidden 768, vocab 50257, seq 128), gpt2-small"
                + " (GPT-2 124M, seq 128) and llama-0.5b (24 layers, hidden 896, 14/2 heads, intermediate 4864, vocab"
                + " 151936, tied embeddings, seq 64). --json prints shape, config, ms_per_step, tokens_per_s, peak_rss_mb"
                + " (VmHWM, the maximum so far), steps, threads, batch, seq, trainable_params, last_loss, base_mb (the base"
                + " weights as held), quantised_weights, quant_bits_per_weight and build_rss_mb (VmRSS once the model is"
                + " built). The Python counterpart is"
                + " peft-examples/src/main/python/bench_hf.py (scripts/bench.sh runs both), measured figures in"
                + " docs/benchmarks.md. Java API: BenchCommand.measure."},
        footer = {"Examples:",
            "  $ ./peft4j bench --shape llama-tiny,gpt2-tiny --steps 20",
            "  $ ./peft4j bench --shape llama-small --config qlora,qlora-gc --steps 2 --json",
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
                + "\"n_head\":12,\"vocab_size\":50257,\"n_positions\":1024,\"resid_pdrop\":0,\"embd_pdrop\":0,\"attn_pdrop\":0}"),
        /**
         * A 0.5B Llama (Qwen2.5-0.5B's sizes without the q/k/v biases): 24 layers, hidden 896, 14 heads, 2 KV heads,
         * intermediate 4864, vocab 151936, tied embeddings, seq 64.
         */
        LLAMA_05B("llama-0.5b", 64, 2, List.of("q_proj", "v_proj"), "{\"model_type\":\"llama\",\"hidden_size\":896,"
                + "\"intermediate_size\":4864,\"num_hidden_layers\":24,\"num_attention_heads\":14,\"num_key_value_heads\":2,"
                + "\"vocab_size\":151936,\"max_position_embeddings\":2048,\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":true}");

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

    /** What is trained: LoRA on a dense or a 4-bit base, with or without gradient checkpointing. */
    public enum BenchConfig {
        /** LoRA on the dense fp32 base. */
        LORA("lora", false, false, false),
        /** LoRA with gradient checkpointing. */
        LORA_GC("lora-gc", false, false, true),
        /** QLoRA: LoRA on an NF4 base with double quantisation (bitsandbytes' QLoRA setting), blocks of 64. */
        QLORA("qlora", true, true, false),
        /** QLoRA with gradient checkpointing. */
        QLORA_GC("qlora-gc", true, true, true),
        /** LoRA on an NF4 base without double quantisation. */
        QLORA_NODQ("qlora-nodq", true, false, false);

        final String id;
        final boolean quantized;
        final boolean doubleQuant;
        final boolean checkpointing;

        BenchConfig(String id, boolean quantized, boolean doubleQuant, boolean checkpointing) {
            this.id = id;
            this.quantized = quantized;
            this.doubleQuant = doubleQuant;
            this.checkpointing = checkpointing;
        }

        /** @return the name used on the command line */
        public String id() {
            return id;
        }

        static BenchConfig of(String id) {
            for (BenchConfig c : values()) {
                if (c.id.equals(id)) {
                    return c;
                }
            }
            throw new IllegalArgumentException("unknown bench config '" + id + "'");
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
     * @param base the bytes of the base weights
     * @param buildRssMb the resident set size (MiB) once the model is built and the adapter added, before training
     */
    public record Result(BenchShape shape, BenchConfig config, int steps, double msPerStep, double tokensPerS,
            double peakRssMb, int threads, long trainableParams, double lastLoss, BaseBytes base, double buildRssMb) {
        /** @return the result as one JSON line */
        public String json() {
            return String.format(Locale.ROOT, "{\"impl\":\"peft4j\",\"shape\":\"%s\",\"config\":\"%s\",\"ms_per_step\":%.3f,"
                    + "\"tokens_per_s\":%.1f,\"peak_rss_mb\":%.1f,\"steps\":%d,\"threads\":%d,\"batch\":%d,\"seq\":%d,"
                    + "\"trainable_params\":%d,\"last_loss\":%.6f,\"base_mb\":%.1f,\"quantised_weights\":%d,"
                    + "\"quant_bits_per_weight\":%.4f,\"build_rss_mb\":%.1f}", shape.id, config.id, msPerStep, tokensPerS,
                    peakRssMb, steps, threads, BATCH, shape.seqLen, trainableParams, lastLoss, base.bytes() / 1048576.0,
                    base.quantisedWeights(), base.bitsPerQuantisedWeight(), buildRssMb);
        }
    }

    /**
     * The bytes of a base model's weights as held in memory.
     *
     * @param bytes every frozen weight: 4-bit layers as their packed codes, absmax (and nested absmax and offset with
     *     double quantisation), everything else (embeddings, norms, dense layers) at its dtype's size
     * @param quantisedWeights the number of weights held in 4 bits
     * @param quantisedBytes the bytes those take
     */
    public record BaseBytes(long bytes, long quantisedWeights, long quantisedBytes) {
        /** @return bits per 4-bit weight including its share of the absmax values (0 without any) */
        public double bitsPerQuantisedWeight() {
            return quantisedWeights == 0 ? 0 : 8.0 * quantisedBytes / quantisedWeights;
        }

        /**
         * Measures a model before adapters are added.
         *
         * @param model the base model
         * @return its bytes
         */
        public static BaseBytes of(TransformerModel model) {
            List<String> quantised = new ArrayList<>();
            long qWeights = 0;
            long qBytes = 0;
            for (Map.Entry<String, io.github.peft4j.nn.Module> e : model.modules().entrySet()) {
                if (e.getValue() instanceof Linear4bit l) {
                    quantised.add(e.getKey() + ".");
                    qWeights += l.inFeatures() * l.outFeatures();
                    qBytes += l.storageBytes();
                }
            }
            long other = 0;
            java.util.Set<NDArray> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
            for (Map.Entry<String, Param> e : model.parameters().entrySet()) {
                String name = e.getKey();
                NDArray a = e.getValue().array();
                if (quantised.stream().noneMatch(name::startsWith) && seen.add(a)) {
                    other += a.getShape().size() * a.getDataType().getNumOfBytes();
                }
            }
            return new BaseBytes(other + qBytes, qWeights, qBytes);
        }
    }

    @ParentCommand
    Peft4jCli root;

    @Option(names = "--shape", required = true, split = ",", paramLabel = "SHAPE", converter = Choices.BenchShapes.class,
            completionCandidates = Choices.BenchShapes.class,
            description = "Shapes to time, comma-separated: ${COMPLETION-CANDIDATES} (all = every shape).")
    List<String> shapeNames;

    @Option(names = "--config", split = ",", paramLabel = "CONFIG", converter = Choices.BenchConfigs.class,
            completionCandidates = Choices.BenchConfigs.class,
            description = "What to train, comma-separated: ${COMPLETION-CANDIDATES} (default: lora). lora: LoRA on the"
                + " fp32 base; qlora: on an NF4 base with double quantisation (blocks of 64; lm_head and embeddings stay"
                + " dense), qlora-nodq without; -gc: with gradient checkpointing. 4-bit bases: Llama shapes only.")
    List<String> configNames;

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
        List<BenchConfig> configs = new ArrayList<>();
        for (String c : configNames == null ? List.of(BenchConfig.LORA.id) : configNames) {
            configs.add(BenchConfig.of(c));
        }
        for (BenchShape s : shapes) {
            for (BenchConfig c : configs) {
                if (c.quantized && !s.config.contains("\"llama\"")) {
                    throw new CliException("bench: --config " + c.id + " needs a Llama shape (4-bit bases here are built"
                            + " for Llama); got --shape " + s.id);
                }
            }
        }
        if (!json) {
            out.printf(Locale.ROOT, "%-12s %-11s %6s %12s %12s %12s %10s %8s%n", "shape", "config", "steps", "ms/step",
                    "tokens/s", "peak RSS MB", "base MB", "threads");
        }
        for (BenchShape s : shapes) {
            for (BenchConfig c : configs) {
                Result r = measure(s, c, steps == null ? s.defaultSteps : steps, warmup, profile);
                if (json) {
                    out.println(r.json());
                } else {
                    out.printf(Locale.ROOT, "%-12s %-11s %6d %12.2f %12.1f %12.1f %10.1f %8d%n", s.id, c.id, r.steps,
                            r.msPerStep, r.tokensPerS, r.peakRssMb, r.base.bytes() / 1048576.0, r.threads);
                }
                out.flush();
            }
        }
        return 0;
    }

    /**
     * Builds the shape's random model with a LoRA adapter and times LoRA training steps on the dense base.
     *
     * @param shape the shape
     * @param steps timed steps
     * @param warmup untimed steps first
     * @param profile if not null, a Chrome trace of the timed steps from libtorch's profiler is written there
     * @return the figures
     */
    public static Result measure(BenchShape shape, int steps, int warmup, Path profile) {
        return measure(shape, BenchConfig.LORA, steps, warmup, profile);
    }

    /**
     * Builds the shape's random model (its linear layers quantised one at a time as they are built, for a 4-bit
     * config), adds a LoRA adapter and times {@link PeftTrainer} steps: batch {@value #BATCH} of random token ids
     * (labels = ids), AdamW, constant learning rate, no clipping, gradient checkpointing as the config says.
     *
     * @param shape the shape
     * @param config what to train
     * @param steps timed steps
     * @param warmup untimed steps first
     * @param profile if not null, a Chrome trace of the timed steps from libtorch's profiler is written there
     * @return the figures
     */
    public static Result measure(BenchShape shape, BenchConfig config, int steps, int warmup, Path profile) {
        Engine.getInstance().setRandomSeed(SEED);
        try (TransformerModel model = build(shape, config); AdamW opt = AdamW.builder().build()) {
            BaseBytes base = BaseBytes.of(model);
            PeftModel peft = PeftModel.wrap(model);
            // GPT-2's Conv1D stores (in, out): fan_in_fan_out = true, as HF PEFT sets it (with a warning)
            peft.addAdapter(PeftModel.DEFAULT, new LoraConfig().r(RANK).loraAlpha(ALPHA).loraDropout(0)
                    .fanInFanOut(shape.config.contains("gpt2")).targetModules(shape.targets.toArray(String[]::new)));
            long trainableParams = peft.trainableParameters().values().stream().mapToLong(Param::numel).sum();
            double buildRss = rssMb();
            java.util.Random r = new java.util.Random(SEED);
            List<Example> data = new ArrayList<>();
            int vocab = model.vocabSize();
            for (int i = 0; i < (warmup + steps) * BATCH; i++) {
                int[] ids = new int[shape.seqLen];
                for (int k = 0; k < ids.length; k++) {
                    ids[k] = r.nextInt(vocab);
                }
                data.add(Example.tokens(ids));
            }
            long[] ends = new long[warmup + steps + 1];
            double[] loss = {Double.NaN};
            try (PeftTrainer t = PeftTrainer.builder().setModel(peft).setTrainData(data).optOptimizer(opt)
                    .optLearningRate(LR).optMaxSteps(warmup + steps).optBatchSize(BATCH).optShuffle(false)
                    .optMaxGradNorm(0).optGradientCheckpointing(config.checkpointing).optLogEvery(Integer.MAX_VALUE)
                    .optStepListener(s -> {
                        ends[(int) s.step()] = System.nanoTime();
                        loss[0] = s.loss();
                        if (s.step() == warmup && profile != null) {
                            JniUtils.startProfile(false, false, false);
                        }
                    }).build()) {
                if (warmup == 0 && profile != null) {
                    JniUtils.startProfile(false, false, false);
                }
                ends[0] = System.nanoTime();
                t.train();
            }
            if (profile != null) {
                JniUtils.stopProfile(profile.toAbsolutePath().toString());
            }
            double ms = (ends[warmup + steps] - ends[warmup]) / 1e6 / steps;
            return new Result(shape, config, steps, ms, BATCH * (double) shape.seqLen * 1000.0 / ms, peakRssMb(),
                    JniUtils.getNumThreads(), trainableParams, loss[0], base, buildRss);
        }
    }

    /** The shape's random model; for a 4-bit config every linear layer but lm_head quantised as it is built. */
    static TransformerModel build(BenchShape shape, BenchConfig config) {
        if (!config.quantized) {
            return Models.random(shape.config(), Device.cpu(), DataType.FLOAT32, null);
        }
        HfConfig c = shape.config();
        NDManager manager = NDManager.newBaseManager(Device.cpu());
        try {
            Quantization q = new Quantization(FourBitType.NF4, FourBitQuantizer.DEFAULT_BLOCKSIZE, config.doubleQuant, null);
            return new LlamaModel(c, new QuantizingRandom(manager, (float) c.number("initializer_range", 0.02), q),
                    manager, DataType.FLOAT32);
        } catch (RuntimeException e) {
            manager.close();
            throw e;
        }
    }

    /**
     * Random weights (as {@link RandomWeights}) whose linear layers are quantised one at a time as the model is
     * built, so that the dense model never exists (as transformers quantises while loading a checkpoint).
     */
    private static final class QuantizingRandom implements WeightSource {
        private final RandomWeights random;
        private final NDManager manager;
        private final Quantization q;
        private final Map<Integer, float[]> buffers = new java.util.HashMap<>();
        private final java.util.SplittableRandom host = new java.util.SplittableRandom(SEED);
        private final float std;

        QuantizingRandom(NDManager manager, float std, Quantization q) {
            this.random = new RandomWeights(manager, DataType.FLOAT32, std);
            this.std = std;
            this.manager = manager;
            this.q = q;
        }

        @Override
        public NDArray get(String name, Shape shape, Init init) {
            return random.get(name, shape, init);
        }

        @Override
        public NDArray head(String name, Shape shape, Init init) {
            return random.head(name, shape, init);
        }

        @Override
        public io.github.peft4j.nn.Module linear(String path, long in, long out, boolean bias) {
            if (!q.quantizes(path)) {
                return WeightSource.super.linear(path, in, out, bias);
            }
            // normal(0, std) drawn on the host into one buffer per weight size, reused: the build allocates (and
            // frees) no dense weight in libtorch or on the Java heap, as a checkpoint quantised while loading
            float[] dense = buffers.computeIfAbsent((int) (out * in), float[]::new);
            for (int i = 0; i < dense.length; i++) {
                dense[i] = (float) (host.nextGaussian() * std);
            }
            FourBitWeights fw = FourBitQuantizer.quantize(dense, new long[] {out, in}, q.type(), q.blocksize(),
                    q.doubleQuant());
            NDArray b = bias ? random.get(path + ".bias", new Shape(out), Init.ZEROS) : null;
            return Linear4bit.of(fw, b, manager, "float32");
        }
    }

    /**
     * The process's peak resident set size from {@code VmHWM} in {@code /proc/self/status} (Linux).
     *
     * @return MiB, or -1 where the file does not exist
     */
    public static double peakRssMb() {
        return status("VmHWM:");
    }

    /**
     * The process's current resident set size from {@code VmRSS} in {@code /proc/self/status} (Linux).
     *
     * @return MiB, or -1 where the file does not exist
     */
    public static double rssMb() {
        return status("VmRSS:");
    }

    private static double status(String key) {
        Path status = Path.of("/proc/self/status");
        if (!Files.isReadable(status)) {
            return -1;
        }
        try {
            for (String line : Files.readAllLines(status)) {
                if (line.startsWith(key)) {
                    String[] f = line.substring(key.length()).trim().split("\\s+"); // "<n> kB"
                    return Long.parseLong(f[0]) / 1024.0;
                }
            }
            return -1;
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }
}
