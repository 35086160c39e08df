package io.github.peft4j.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.serve.RemoteLm;
import io.github.peft4j.io.AtomicFiles;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.io.PrintStream;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.TypeConversionException;

/**
 * {@code peft4j generate}: greedy or sampled decoding, either of a text prompt (tokenized with the model
 * directory's {@code tokenizer.json}; the decoded continuation is printed, and the tokenizer's EOS also stops) or
 * of token ids from the {@code logits} command's input file, writing {@code {"generated_ids": [[...]]}} (the new
 * tokens only; rows that stopped early are padded with the pad id, as transformers returns them).
 */
@Command(name = "generate", sortOptions = false, separator = " ",
        description = {"Generates text or token ids, greedy (default) or sampled, with a KV cache.",
            "",
            "--prompt TEXT tokenizes the text with the model directory's tokenizer.json (special tokens added as the"
                + " tokenizer's template says), generates, and prints the decoded continuation (special tokens skipped);"
                + " the tokenizer's EOS stops generation as well as the config's. With --output the ids are written too.",
            "",
            "--input FILE takes the logits command's file; rows must be LEFT padded (mask 0 before the prompt). Output:"
                + " {\"generated_ids\": [[...]]}, the new tokens only, one row per prompt; a row that stopped at an EOS or"
                + " stop id is filled with the pad id, as transformers returns it. Without --output the JSON goes to"
                + " stdout; with it the file is written atomically and a summary line is printed. EOS and pad ids come"
                + " from the model's config.json. Java API: Generator.of(peftModel).generate(ids, mask, config);"
                + " details in docs/generation.md.",
            "",
            "--model http://HOST:PORT decodes a model behind peft4j serve: only ids and logits cross the wire, each"
                + " step's logits come from the server's session (its KV cache stays there), and the ids equal the"
                + " in-process ones. --row-adapters then names the server's adapters; --adapter is refused; --prompt needs"
                + " --tokenizer. With --expert / --anti-expert local, proxy-tuning steers the remote M (docs/server.md)."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_generate",
            "  $ T=peft-core/src/test/resources/fixtures/tokenizers/bpe",
            "  $ mkdir -p /tmp/gen/tiny",
            "  $ cp $F/base/config.json $F/base/model.safetensors $T/tokenizer.json $T/tokenizer_config.json /tmp/gen/tiny",
            "  $ ./peft4j generate --model /tmp/gen/tiny --adapter $F/adapter --prompt \"Hello world\" --max-new-tokens 12",
            "  5 ff5 f5stru5stru5",
            "  $ echo '{\"input_ids\": [[47, 83, 38, 53, 76, 116, 24, 121], [0, 0, 0, 15, 49, 23, 105, 26]], \"attention_mask\": [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1]]}' > /tmp/gen/prompts.json",
            "  $ ./peft4j generate --model $F/base --adapter $F/adapter --input /tmp/gen/prompts.json --max-new-tokens 10 \\",
            "        --output /tmp/gen/out.json",
            "  wrote generated_ids [2, 10] to /tmp/gen/out.json (new tokens per row: [10, 10])",
            "  $ cat /tmp/gen/out.json",
            "  {\"generated_ids\":[[65,4,4,4,4,4,4,4,4,4],[114,114,114,114,114,114,114,114,114,114]]}",
            "  $ ./peft4j generate --model $F/base --input /tmp/gen/prompts.json --max-new-tokens 10",
            "  {\"generated_ids\":[[36,96,5,5,59,23,20,72,68,28],[72,78,5,72,78,5,72,78,12,0]]}",
            "  $ ./peft4j generate --model $F/base --input /tmp/gen/prompts.json --max-new-tokens 8 --repetition-penalty 1.5 \\",
            "        --stop 59",
            "  {\"generated_ids\":[[36,96,5,59,0,0],[72,78,5,25,29,12]]}",
            "  $ ./peft4j generate --model $F/base --input /tmp/gen/prompts.json --max-new-tokens 8 --sample --temperature 0.8 \\",
            "        --top-k 20 --top-p 0.9 --seed 7",
            "  {\"generated_ids\":[[46,118,76,60,15,4,123,118],[3,86,46,39,44,125,106,88]]}",
            "  (a random 128-token model: the text is noise, but it is the decoded greedy continuation. The greedy ids",
            "  are transformers' generate ids; the fixture's EOS is 12: row 2 of the base run stops there and is padded",
            "  with 0, the penalty run stops row 1 at the extra stop id 59. The same --seed gives the same sample.)"})
final class GenerateCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR|URL", converter = ModelRef.Converter.class,
            description = "Hugging Face model directory (with tokenizer.json for --prompt), or http://HOST:PORT of a"
                    + " peft4j serve (its adapters are the server's; --prompt then needs --tokenizer).")
    ModelRef model;

    @Option(names = "--tokenizer", paramLabel = "PATH", converter = Converters.ExistingPath.class,
            description = "tokenizer.json, or a directory with it, for --prompt (default: the --model directory).")
    Path tokenizer;

    @Option(names = "--adapter", paramLabel = "[NAME=]DIR", converter = AdapterSpec.Converter.class,
            description = "Adapter directory to load under NAME (default: default). Repeatable; all are active together.")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--row-adapters", split = ",", paramLabel = "NAME",
            description = "With --input: one adapter name per row (a loaded --adapter NAME, or " + CallContext.BASE
                    + " for the base model), as HF PEFT's adapter_names=; every row decodes with its own adapter.")
    List<String> rowAdapters;

    @Option(names = "--expert", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Proxy-tuning: the tuned small model M+ (a model directory; with --expert-adapter its adapter)."
                    + " Each step decodes s_M + alpha (s_M+ - s_M-); needs --anti-expert; all three share the vocabulary.")
    Path expert;

    @Option(names = "--expert-adapter", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Proxy-tuning: an adapter loaded on --expert (usually the small model's fine-tuned adapter).")
    Path expertAdapter;

    @Option(names = "--anti-expert", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Proxy-tuning: the untuned small model M- (usually the same directory as --expert).")
    Path antiExpert;

    @Option(names = "--anti-expert-adapter", paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Proxy-tuning: an adapter loaded on --anti-expert (default: none).")
    Path antiExpertAdapter;

    @Option(names = "--alpha", paramLabel = "A", description = "Proxy-tuning: the steering strength (number; default: ${DEFAULT-VALUE}).")
    double alpha = 1.0;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "A text prompt (give this or --input).")
    String prompt;

    @Option(names = "--input", paramLabel = "FILE", converter = Converters.ExistingFile.class,
            description = "JSON file with LEFT-padded input_ids and attention_mask (give this or --prompt).")
    Path input;

    @Option(names = "--output", paramLabel = "FILE", description = "Write {\"generated_ids\": ...} here (default: stdout).")
    Path output;

    @Option(names = "--max-new-tokens", paramLabel = "N", converter = Converters.Positive.class,
            description = "New tokens per row, at most (integer >= 1; default: ${DEFAULT-VALUE}).")
    int maxNewTokens = 20;

    @Option(names = "--greedy", description = "Greedy decoding (the default).")
    boolean greedy;

    @Option(names = "--sample", description = "Sample from the (filtered) distribution instead.")
    boolean sample;

    @Option(names = "--temperature", paramLabel = "T", converter = Converters.PositiveNum.class,
            description = "Sampling temperature (number > 0; default: 1; needs --sample).")
    Double temperature;

    @Option(names = "--top-k", paramLabel = "K", converter = Converters.NonNegative.class,
            description = "Keep the K most likely tokens (integer >= 0, 0 = off; default: 0; needs --sample).")
    Integer topK;

    @Option(names = "--top-p", paramLabel = "P", converter = Converters.TopP.class,
            description = "Nucleus sampling mass (number in (0, 1]; default: 1; needs --sample).")
    Double topP;

    @Option(names = "--seed", paramLabel = "S", description = "Sampling seed (integer; default: 0; needs --sample).")
    Long seed;

    @Option(names = "--repetition-penalty", paramLabel = "R", converter = Converters.PositiveNum.class,
            description = "Penalty for tokens already in the row, as transformers (number > 0; default: ${DEFAULT-VALUE}).")
    double repetitionPenalty = 1.0;

    @Option(names = "--stop", split = ",", paramLabel = "ID", converter = Converters.NonNegative.class,
            description = "Extra token ids that end a row (comma-separated, beside the config's EOS).")
    List<Integer> stop = new ArrayList<>();

    @Option(names = "--no-cache", description = "Recompute every position each step instead of using the KV cache.")
    boolean noCache;

    @Mixin
    QuantizeOptions quantize;

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        if (quantize.quantization("generate") != null && model.url() != null) {
            throw new CliException("generate: --quantize needs a local --model DIR, not " + model.url());
        }
        if ((prompt == null) == (input == null)) {
            throw new CliException("generate: give exactly one of --prompt TEXT and --input FILE");
        }
        AdapterSpec.names("generate", adapters);
        if (model.url() != null && !adapters.isEmpty()) {
            throw new CliException("generate: --adapter needs a local --model DIR; a served model's adapters are given to"
                    + " serve (pick one per row with --row-adapters)");
        }
        if (model.url() == null) {
            AdapterSpec.checkRows("generate", rowAdapters, adapters);
        }
        if ((expert == null) != (antiExpert == null)) {
            throw new CliException("generate: proxy-tuning needs both --expert and --anti-expert");
        }
        if (expert == null && (expertAdapter != null || antiExpertAdapter != null)) {
            throw new CliException("generate: --expert-adapter / --anti-expert-adapter need --expert and --anti-expert");
        }
        GenerationConfig config = config();
        if (prompt != null) {
            if (rowAdapters != null) {
                throw new CliException("generate: --row-adapters needs --input (one name per input row)");
            }
            fromText(config);
            return 0;
        }
        try (Base base = Base.open(model, adapters, quantize.quantization("generate"))) {
            if (model.url() != null) {
                checkRemoteRows(base.remote.adapters());
            }
            InputFile in = InputFile.read(input, base.lm.vocabSize());
            AdapterSpec.checkRowCount("generate", rowAdapters, in, input);
            try (Experts experts = Experts.open(expert, expertAdapter, antiExpert, antiExpertAdapter)) {
                GenerationResult r = experts.generator(base.lm, alpha).generate(in.inputIds, in.attentionMask, config,
                        rowAdapters == null ? CallContext.NONE : CallContext.rowAdapters(rowAdapters));
                write(r, root.out);
            }
        }
        return 0;
    }

    /** Checks --row-adapters against the adapters the server has loaded. */
    private void checkRemoteRows(List<String> served) {
        if (rowAdapters == null) {
            return;
        }
        for (String r : rowAdapters) {
            if (!r.equals(CallContext.BASE) && !served.contains(r)) {
                throw new CliException("generate: --row-adapters: '" + r + "' is not an adapter of the server " + model.url()
                        + "; expected one of " + served + " or " + CallContext.BASE);
            }
        }
    }

    /**
     * The value of {@code --model}: a model directory or the address of a {@code peft4j serve}.
     *
     * @param dir the directory (exists), or null
     * @param url the server's address, or null
     */
    record ModelRef(Path dir, URI url) {
        /** {@code http://HOST:PORT[/]} is a server, anything else a directory that must exist. */
        static final class Converter implements ITypeConverter<ModelRef> {
            @Override
            public ModelRef convert(String v) {
                if (v.startsWith("http://") || v.startsWith("https://")) {
                    URI u;
                    try {
                        u = new URI(v);
                    } catch (URISyntaxException e) {
                        throw new TypeConversionException("'" + v + "' is not a URL: " + e.getReason());
                    }
                    if (!"http".equals(u.getScheme()) || u.getHost() == null || u.getPort() < 0
                            || u.getPath() != null && !u.getPath().isEmpty() && !u.getPath().equals("/")) {
                        throw new TypeConversionException("'" + v + "': expected http://HOST:PORT of a peft4j serve");
                    }
                    return new ModelRef(null, u);
                }
                return new ModelRef(new Converters.ExistingDir().convert(v), null);
            }
        }

        @Override
        public String toString() {
            return dir != null ? dir.toString() : url.toString();
        }
    }

    /** M: a local model with its adapters, or a remote one. */
    private static final class Base implements AutoCloseable {
        final TransformerModel local;
        final RemoteLm remote;
        final LanguageModel lm;

        private Base(TransformerModel local, RemoteLm remote, LanguageModel lm) {
            this.local = local;
            this.remote = remote;
            this.lm = lm;
        }

        static Base open(ModelRef ref, List<AdapterSpec> adapters, io.github.peft4j.model.Quantization q) {
            if (ref.url() != null) {
                RemoteLm r = RemoteLm.connect(ref.url());
                return new Base(null, r, r);
            }
            TransformerModel m = AdapterSpec.loadBase(ref.dir(), adapters, q);
            try {
                return new Base(m, null, LanguageModel.of(AdapterSpec.open(m, adapters)));
            } catch (RuntimeException e) {
                m.close();
                throw e;
            }
        }

        @Override
        public void close() {
            if (local != null) {
                local.close();
            } else {
                remote.close();
            }
        }
    }

    /**
     * The small models of proxy-tuning (none without --expert): M+ and M-, each its own model instance with its own
     * adapter, so any method works on either (two views of one instance would share its active adapter).
     */
    private static final class Experts implements AutoCloseable {
        private final TransformerModel plus;
        private final TransformerModel minus;
        private final PeftModel plusPeft;
        private final PeftModel minusPeft;

        private Experts(TransformerModel plus, PeftModel plusPeft, TransformerModel minus, PeftModel minusPeft) {
            this.plus = plus;
            this.plusPeft = plusPeft;
            this.minus = minus;
            this.minusPeft = minusPeft;
        }

        static Experts open(Path expert, Path expertAdapter, Path anti, Path antiAdapter) {
            if (expert == null) {
                return new Experts(null, null, null, null);
            }
            List<AdapterSpec> plusSpecs = expertAdapter == null ? List.of() : List.of(new AdapterSpec(PeftModel.DEFAULT, expertAdapter));
            List<AdapterSpec> minusSpecs = antiAdapter == null ? List.of() : List.of(new AdapterSpec(PeftModel.DEFAULT, antiAdapter));
            TransformerModel p = AdapterSpec.loadBase(expert, plusSpecs);
            try {
                TransformerModel n = AdapterSpec.loadBase(anti, minusSpecs);
                try {
                    return new Experts(p, AdapterSpec.open(p, plusSpecs), n, AdapterSpec.open(n, minusSpecs));
                } catch (RuntimeException e) {
                    n.close();
                    throw e;
                }
            } catch (RuntimeException e) {
                p.close();
                throw e;
            }
        }

        /** Generator over M alone, or over proxy-tuning's {@code s_M + alpha (s_M+ - s_M-)}. */
        Generator generator(LanguageModel base, double alpha) {
            if (plus == null) {
                return Generator.of(base);
            }
            return Generator.of(io.github.peft4j.prompt.proxy.ProxyTuningLm.of(base,
                    LanguageModel.of(plusPeft), LanguageModel.of(minusPeft), alpha));
        }

        @Override
        public void close() {
            if (plus != null) {
                plus.close();
                minus.close();
            }
        }
    }

    /** Tokenizes the prompt, generates, prints the decoded new text (special tokens skipped). */
    private void fromText(GenerationConfig config) {
        if (tokenizer == null && model.dir() == null) {
            throw new CliException("generate: --prompt with --model " + model.url() + " needs --tokenizer PATH (the"
                    + " served model's tokenizer.json or its directory); or give token ids with --input");
        }
        try (Tokenizer tok = Tokenizer.load(tokenizer != null ? tokenizer : model.dir());
                Base base = Base.open(model, adapters, quantize.quantization("generate"))) {
            int vocab = base.lm.vocabSize();
            int[] ids = tok.encode(prompt, true);
            if (ids.length == 0) {
                throw new CliException("generate: --prompt gives no tokens");
            }
            for (int id : ids) {
                if (id >= vocab) {
                    throw new CliException("generate: " + tok.file() + " gives token id " + id
                            + ", outside the model's vocabulary [0, " + vocab + ")");
                }
            }
            if (tok.eosTokenId().isPresent()) { // the tokenizer's EOS ends the text too
                int[] stops = Arrays.copyOf(config.stopTokenIds(), config.stopTokenIds().length + 1);
                stops[stops.length - 1] = tok.eosTokenId().getAsInt();
                config = config.toBuilder().stopTokenIds(stops).build();
            }
            try (Experts experts = Experts.open(expert, expertAdapter, antiExpert, antiExpertAdapter)) {
                GenerationResult r = experts.generator(base.lm, alpha).generate(new int[][] {ids}, config);
                if (output != null) {
                    write(r, root.out);
                }
                root.out.println(tok.decode(r.tokens(0), true));
            }
        }
    }

    private void write(GenerationResult r, PrintStream out) {
        ObjectNode node = new ObjectMapper().createObjectNode();
        ArrayNode rows = node.putArray("generated_ids");
        for (int[] row : r.tokens()) {
            ArrayNode n = rows.addArray();
            Arrays.stream(row).forEach(n::add);
        }
        String json = node.toString();
        if (output == null) {
            out.println(json);
        } else {
            AtomicFiles.writeString(output, json + "\n");
            out.println("wrote generated_ids [" + r.size() + ", " + (r.size() == 0 ? 0 : r.tokens()[0].length) + "] to "
                    + output + " (new tokens per row: " + Arrays.toString(r.lengths()) + ")");
        }
    }

    private GenerationConfig config() {
        if (greedy && sample) {
            throw new CliException("generate: --greedy and --sample exclude each other");
        }
        if (!sample) {
            for (Object[] o : new Object[][] {{"--temperature", temperature}, {"--top-k", topK}, {"--top-p", topP},
                {"--seed", seed}}) {
                if (o[1] != null) {
                    throw new CliException("generate: " + o[0] + " only applies with --sample");
                }
            }
        }
        return GenerationConfig.builder().maxNewTokens(maxNewTokens).doSample(sample)
                .temperature(temperature == null ? 1.0 : temperature).topK(topK == null ? 0 : topK)
                .topP(topP == null ? 1.0 : topP).seed(seed == null ? 0 : seed).repetitionPenalty(repetitionPenalty)
                .useCache(!noCache).stopTokenIds(stop.stream().mapToInt(Integer::intValue).toArray()).build();
    }
}
