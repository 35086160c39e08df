package io.github.peft4j.examples;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code peft4j logits}: one forward pass of a model directory (with adapters), logits written as JSON. */
@Command(name = "logits", sortOptions = false, separator = " ",
        description = {"Runs one forward pass and writes the logits as JSON.",
            "",
            "Input: {\"input_ids\": [[...]], \"attention_mask\": [[...]], \"token_type_ids\": [[...]]} (mask and types"
                + " optional; rows of equal length). Output: {\"shape\": [...], \"logits\": [...]} in fp32, shaped as"
                + " transformers returns them: causal LM [batch, seq (+ virtual tokens for prompt tuning), vocab],"
                + " sequence classification [batch, labels], token classification [batch, seq, labels]. The output"
                + " file is written to a temporary file and renamed. Java API: PeftModel.loadAdapter, PeftModel.forward."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_lora",
            "  $ ./peft4j logits --model $F/base --adapter $F/adapter --input $F/input_ids.json --output /tmp/gen/logits.json",
            "  wrote logits (2, 8, 128) to /tmp/gen/logits.json",
            "  $ ./peft4j logits --model $F/base --adapter $F/adapter --merge --input $F/input_ids.json --output /tmp/gen/m.json",
            "  wrote logits (2, 8, 128) to /tmp/gen/m.json",
            "  $ ./peft4j logits --model $F/base --adapter a=$F/adapter --row-adapters a,__base__ --input $F/input_ids.json \\",
            "        --output /tmp/gen/rows.json",
            "  wrote logits (2, 8, 128) to /tmp/gen/rows.json",
            "  $ ./peft4j logits --model $F/base --input /tmp/gen/none.json --output /tmp/gen/x.json",
            "  peft4j: logits: --input /tmp/gen/none.json: no such file",
            "  $ ./peft4j logits --model peft-core/src/test/resources/fixtures/hf-peft/gpt2_lora/base --adapter $F/adapter \\",
            "        --input $F/input_ids.json --output /tmp/gen/x.json",
            "  peft4j: LORA: target_modules entry 'v_proj' matches no module of GPT2LMHeadModel; module names there: [c_attn, c_fc, c_proj, wpe, wte]"})
final class LogitsCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory (config.json, model.safetensors or shards).")
    Path model;

    @Option(names = "--adapter", paramLabel = "[NAME=]DIR", converter = AdapterSpec.Converter.class,
            description = "Adapter directory (adapter_config.json + adapter_model.safetensors) to load, under NAME"
                    + " (default: default). Repeatable; all given adapters are active together.")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--merge", description = "Merge the adapters into the base weights before the forward pass.")
    boolean merge;

    @Option(names = "--input", required = true, paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "JSON file with input_ids (and optionally attention_mask, token_type_ids).")
    Path input;

    @Option(names = "--output", required = true, paramLabel = "FILE", description = "Where the logits JSON goes.")
    Path output;

    @Option(names = "--row-adapters", split = ",", paramLabel = "NAME",
            description = "One adapter name per input row (a loaded --adapter NAME, or " + CallContext.BASE
                    + " for the base model), as HF PEFT's adapter_names=; excludes --merge.")
    List<String> rowAdapters;

    @Mixin
    QuantizeOptions quantize;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        if (merge && adapters.isEmpty()) {
            throw new CliException("logits: --merge needs --adapter");
        }
        io.github.peft4j.model.Quantization q = quantize.quantization("logits");
        AdapterSpec.names("logits", adapters);
        AdapterSpec.checkRows("logits", rowAdapters, adapters);
        if (merge && rowAdapters != null) {
            throw new CliException("logits: --row-adapters needs the adapters unmerged; drop --merge");
        }
        try (TransformerModel m = AdapterSpec.loadBase(model, adapters, q);
                NDManager nd = NDManager.newBaseManager()) {
            InputFile in = InputFile.read(input, m.vocabSize());
            AdapterSpec.checkRowCount("logits", rowAdapters, in, input);
            PeftModel peft = AdapterSpec.open(m, adapters);
            if (merge) {
                peft = PeftModel.wrap(peft.mergeAndUnload());
            }
            ModelInput mi = new ModelInput(InputFile.toArray(nd, in.inputIds), null, InputFile.toArray(nd, in.attentionMask),
                    InputFile.toArray(nd, in.tokenTypeIds), null, null, false);
            if (rowAdapters != null) {
                mi = mi.withRowAdapters(rowAdapters);
            }
            NDArray logits = peft.forward(mi).logits();
            if (logits == null) {
                throw new CliException("logits: " + m.architecture() + " has no head; nothing to write");
            }
            writeLogits(output, logits.toType(DataType.FLOAT32, false));
            root.out.println("wrote logits " + logits.getShape() + " to " + output);
        }
        return 0;
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
}
