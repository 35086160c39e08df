package io.github.peft4j.examples;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.model.HfConfig;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.AutoPeftModel;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.Set;

/**
 * The {@code peft4j} command line.
 *
 * <pre>
 * peft4j logits --model DIR [--adapter DIR] [--merge] --input FILE --output FILE
 * peft4j info   --model DIR [--adapter DIR]
 * peft4j generate --model DIR [--adapter DIR] --input FILE [--output FILE] [--max-new-tokens N] ...
 * peft4j merge  --model DIR --adapter DIR --output DIR [--force]
 * peft4j prepare-spam --output DIR [--cache DIR] [--seed N]
 * peft4j import-onnx [--onnx FILE] [--tokenizer FILE] --output DIR [--overwrite]
 * peft4j train  --model DIR --data FILE --output DIR [options]   (see TrainCommand)
 * peft4j bench  --shape NAME[,NAME] [--steps N] [--json]   (see {@link BenchCommand})
 * peft4j spam-job [--work DIR] [--methods probe,lora,bitfit,prompt,full] ...
 * </pre>
 *
 * Bad input exits with status 2 and one line on stderr saying what and where.
 */
public final class Peft4jCli {
    private static final String USAGE = String.join("\n",
            "usage: peft4j <command> [options]",
            "  logits --model DIR [--adapter DIR] [--merge] --input FILE --output FILE",
            "         forward pass; writes {\"shape\": [...], \"logits\": [...]} (fp32)",
            "  info   --model DIR [--adapter DIR]",
            "         architecture, dtype, parameter counts and the trainable report",
            GenerateCommand.USAGE,
            MergeCommand.USAGE,
            PrepareSpamCommand.USAGE,
            ImportOnnxCommand.USAGE,
            TrainCommand.USAGE_LINE,
            "  bench  --shape llama-tiny|gpt2-tiny|llama-small|gpt2-small|all [--steps N] [--warmup N] [--threads N] [--profile FILE] [--json]",
            "         times LoRA training steps (forward, backward, AdamW) on a random model",
            SpamJobCommand.USAGE);

    private Peft4jCli() {}

    /**
     * Entry point.
     *
     * @param args the command line
     */
    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /**
     * Runs a command.
     *
     * @param args the command line
     * @param out standard output
     * @param err standard error
     * @return the exit status: 0 success, 2 bad input
     */
    public static int run(String[] args, PrintStream out, PrintStream err) {
        if (args.length == 0 || "--help".equals(args[0]) || "-h".equals(args[0])) {
            (args.length == 0 ? err : out).println(USAGE);
            return args.length == 0 ? 2 : 0;
        }
        try {
            switch (args[0]) {
                case "logits":
                    logits(new Args("logits", args, 1, Set.of("--model", "--adapter", "--input", "--output"), Set.of("--merge")), out);
                    return 0;
                case "generate":
                    GenerateCommand.run(args, out);
                    return 0;
                case "merge":
                    MergeCommand.run(args, out);
                    return 0;
                case "info":
                    info(new Args("info", args, 1, Set.of("--model", "--adapter"), Set.of()), out);
                    return 0;
                case "prepare-spam":
                    PrepareSpamCommand.run(args, out);
                    return 0;
                case "import-onnx":
                    ImportOnnxCommand.run(args, out);
                    return 0;
                case "train":
                    TrainCommand.run(args, out);
                    return 0;
                case "bench":
                    BenchCommand.run(args, out);
                    return 0;
                case "spam-job":
                    SpamJobCommand.run(args, out);
                    return 0;
                default:
                    throw new CliException("unknown command '" + args[0] + "'\n" + USAGE);
            }
        } catch (CliException | PeftException | UncheckedIOException e) {
            err.println("peft4j: " + e.getMessage());
            return 2;
        }
    }

    /** Wraps a model and loads the adapter (if any) as the default, frozen. */
    static PeftModel open(TransformerModel model, Path adapter) {
        PeftModel peft = PeftModel.wrap(model);
        if (adapter != null) {
            peft.loadAdapter(adapter, PeftModel.DEFAULT, false);
        }
        return peft;
    }

    private static void logits(Args a, PrintStream out) {
        Path modelDir = a.existingDir("--model");
        Path adapter = a.optional("--adapter") == null ? null : a.existingDir("--adapter");
        Path input = a.existingFile("--input");
        Path output = Path.of(a.required("--output"));
        if (a.flag("--merge") && adapter == null) {
            throw new CliException("logits: --merge needs --adapter");
        }
        try (TransformerModel model = AutoPeftModel.loadBase(modelDir, adapter, Device.cpu(), DataType.FLOAT32);
                NDManager m = NDManager.newBaseManager()) {
            InputFile in = InputFile.read(input, model.vocabSize());
            PeftModel peft = open(model, adapter);
            if (a.flag("--merge")) {
                peft = PeftModel.wrap(peft.mergeAndUnload());
            }
            NDArray ids = InputFile.toArray(m, in.inputIds);
            NDArray logits = peft.forward(new ModelInput(ids, null, InputFile.toArray(m, in.attentionMask),
                    InputFile.toArray(m, in.tokenTypeIds), null, null, false)).logits();
            if (logits == null) {
                throw new CliException("logits: " + model.architecture() + " has no head; nothing to write");
            }
            writeLogits(output, logits.toType(DataType.FLOAT32, false));
            out.println("wrote logits " + logits.getShape() + " to " + output);
        }
    }

    /** Writes {@code {"shape": [...], "logits": nested lists}} atomically. */
    static void writeLogits(Path file, NDArray logits) {
        long[] shape = logits.getShape().getShape();
        float[] data = logits.toFloatArray();
        AtomicFiles.write(file, os -> {
                try (JsonGenerator g = new ObjectMapper().getFactory().createGenerator(os, JsonEncoding.UTF8)) {
                    g.writeStartObject();
                    g.writeArrayFieldStart("shape");
                    for (long s : shape) {
                        g.writeNumber(s);
                    }
                    g.writeEndArray();
                    g.writeFieldName("logits");
                    nested(g, data, shape, 0, 0);
                    g.writeEndObject();
                }
            });
    }

    private static int nested(JsonGenerator g, float[] data, long[] shape, int dim, int offset) throws IOException {
        g.writeStartArray();
        if (dim == shape.length - 1) {
            for (int i = 0; i < shape[dim]; i++) {
                g.writeNumber(data[offset++]);
            }
        } else {
            for (int i = 0; i < shape[dim]; i++) {
                offset = nested(g, data, shape, dim + 1, offset);
            }
        }
        g.writeEndArray();
        return offset;
    }

    private static void info(Args a, PrintStream out) {
        Path modelDir = a.existingDir("--model");
        Path adapter = a.optional("--adapter") == null ? null : a.existingDir("--adapter");
        HfConfig config = HfConfig.read(modelDir);
        try (TransformerModel model = AutoPeftModel.loadBase(modelDir, adapter, Device.cpu(), DataType.FLOAT32)) {
            long baseParams = model.numParameters();
            PeftModel peft = open(model, adapter);
            out.println("architecture:   " + model.architecture() + " (model_type " + config.modelType() + ")");
            out.println("task:           " + model.task());
            out.println("checkpoint:     torch_dtype " + config.string("torch_dtype", "unspecified") + ", loaded as " + model.dtype());
            out.println("shape:          layers " + model.numLayers() + ", hidden " + model.hiddenSize() + ", heads "
                    + model.numAttentionHeads() + " (kv " + model.numKeyValueHeads() + "), vocab " + model.vocabSize());
            out.printf("base params:    %,d%n", baseParams);
            if (adapter != null) {
                io.github.peft4j.peft.Adapter ad = peft.adapter(PeftModel.DEFAULT);
                out.printf("adapter:        %s from %s, %,d parameters (loaded for inference)%n", ad.config().peftType(),
                        adapter, ad.parameters().values().stream().mapToLong(io.github.peft4j.nn.Param::numel).sum());
            }
            out.println("methods:        " + PeftMethods.types());
            out.println(peft.trainableReport());
        }
    }
}
