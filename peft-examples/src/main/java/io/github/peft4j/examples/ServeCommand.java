package io.github.peft4j.examples;

import io.github.peft4j.generate.serve.LogitsServer;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j serve}: a causal language model with its adapters behind an HTTP JSON server
 * ({@link LogitsServer}): decode sessions, whole-sequence logits, generation. Runs until the process is stopped
 * (or the calling thread is interrupted: then it closes the server and the model and returns 0).
 */
@Command(name = "serve", sortOptions = false, separator = " ",
        description = {"Serves a causal language model (with adapters) over HTTP as JSON, until stopped (Ctrl-C).",
            "",
            "Endpoints: GET / (health: vocab_size, special ids, adapters); POST /sessions {input_ids, attention_mask,"
                + " row_adapters, use_cache} -> {session, shape, logits} (the next-token logits of a LEFT-padded batch);"
                + " POST /sessions/ID/next {tokens} -> {shape, logits}; DELETE /sessions/ID (or POST /sessions/ID/close);"
                + " POST /logits {input_ids, attention_mask, row_adapters} -> every position's logits; POST /generate"
                + " {input_ids, ..., max_new_tokens, do_sample, ...} -> {generated_ids, lengths, stopped}. Logits are"
                + " fp32 JSON arrays; row_adapters names one loaded adapter (or __base__) per row, so one base serves many"
                + " tenants in one batch. Without row_adapters all --adapter adapters are active together.",
            "",
            "Bad requests get a 4xx {\"error\": ...} (400 malformed JSON / shapes / ids outside the vocabulary, 404"
                + " unknown session, 413 body too large, 429 session table full) and never stop the server. Forward calls"
                + " run one at a time (one model); sessions idle longer than --idle-timeout are closed. Binds loopback"
                + " by default. Clients: generate --model http://HOST:PORT, or RemoteLm in Java. Details: docs/server.md."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_lora",
            "  $ ./peft4j serve --model $F/base --adapter a=$F/adapter --port 8199 &",
            "  serving LlamaForCausalLM (vocab 128, adapters [a]) on http://127.0.0.1:8199/",
            "  $ curl -s http://127.0.0.1:8199/ | head -c 60",
            "  {\"status\":\"ok\",\"model\":\"LlamaForCausalLM\",\"vocab_size\":128,",
            "  $ curl -s -X POST http://127.0.0.1:8199/generate -d '{\"input_ids\": [[47, 83, 38], [47, 83, 38]],"
                + " \"row_adapters\": [\"a\", \"__base__\"], \"max_new_tokens\": 4}'",
            "  {\"generated_ids\":[[96,67,96,71],[100,121,46,46]],\"lengths\":[4,4],\"stopped\":[false,false]}",
            "  $ curl -s -X POST http://127.0.0.1:8199/sessions -d '{\"input_ids\": [[47, 83, 999]]}'",
            "  {\"error\":\"decode: input_ids[0][2] = 999 is outside the vocabulary [0, 128)\"}",
            "  $ echo '{\"input_ids\": [[47, 83, 38, 53, 76, 116, 24, 121]]}' > /tmp/gen/one.json",
            "  $ ./peft4j generate --model http://127.0.0.1:8199 --input /tmp/gen/one.json --max-new-tokens 6",
            "  {\"generated_ids\":[[36,96,125,55,125,55]]}",
            "  $ ./peft4j generate --model $F/base --adapter $F/adapter --input /tmp/gen/one.json --max-new-tokens 6",
            "  {\"generated_ids\":[[36,96,125,55,125,55]]}",
            "  (the served adapter a is active on rows without row_adapters, so the remote ids equal the local run's)"})
final class ServeCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face causal LM directory (config.json, model.safetensors or shards).")
    Path model;

    @Option(names = "--adapter", paramLabel = "[NAME=]DIR", converter = AdapterSpec.Converter.class,
            description = "Adapter directory to load under NAME (default: default). Repeatable; requests pick one per row"
                    + " with row_adapters.")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--host", paramLabel = "HOST",
            description = "Address to bind (default: ${DEFAULT-VALUE}, loopback only; 0.0.0.0 exposes the model to the network).")
    String host = "127.0.0.1";

    @Option(names = "--port", required = true, paramLabel = "N", converter = Converters.NonNegative.class,
            description = "Port to listen on (integer in [0, 65535]; 0 picks a free one, printed on start).")
    int port;

    @Option(names = "--max-sessions", paramLabel = "N", converter = Converters.Positive.class,
            description = "Most decode sessions open at once; more answer 429 (integer >= 1; default: ${DEFAULT-VALUE}).")
    int maxSessions = LogitsServer.Options.defaults().maxSessions();

    @Option(names = "--idle-timeout", paramLabel = "SECONDS", converter = Converters.Positive.class,
            description = "A session unused this long is closed (integer >= 1; default: ${DEFAULT-VALUE}).")
    int idleTimeout = (int) LogitsServer.Options.defaults().idleTimeout().toSeconds();

    @Option(names = "--max-body-bytes", paramLabel = "N", converter = Converters.Positive.class,
            description = "Largest request body; larger ones answer 413 (integer >= 1; default: ${DEFAULT-VALUE}).")
    int maxBodyBytes = LogitsServer.Options.defaults().maxBodyBytes();

    @Option(names = "--threads", paramLabel = "N", converter = Converters.Positive.class,
            description = "Request threads; forward calls still run one at a time (integer >= 1; default: ${DEFAULT-VALUE}).")
    int threads = LogitsServer.Options.defaults().threads();

    @Option(names = "--max-new-tokens", paramLabel = "N", converter = Converters.Positive.class,
            description = "Largest max_new_tokens a generate request may ask for (integer >= 1; default: ${DEFAULT-VALUE}).")
    int maxNewTokens = LogitsServer.Options.defaults().maxNewTokens();

    @Mixin
    HelpOption help;

    @Override
    public Integer call() {
        AdapterSpec.names("serve", adapters);
        if (port > 65535) {
            throw new CliException("serve: --port " + port + " is outside [0, 65535]");
        }
        LogitsServer.Options o = new LogitsServer.Options(host, port, maxSessions, Duration.ofSeconds(idleTimeout),
                maxBodyBytes, threads, maxNewTokens);
        TransformerModel m = AdapterSpec.loadBase(model, adapters);
        LogitsServer server;
        try {
            PeftModel peft = AdapterSpec.open(m, adapters);
            server = LogitsServer.start(peft, o);
        } catch (RuntimeException e) {
            m.close();
            throw e;
        }
        Thread hook = new Thread(() -> {
            server.close();
            m.close();
        }, "peft4j-serve-stop");
        Runtime.getRuntime().addShutdownHook(hook);
        root.out.println("serving " + m.architecture() + " (vocab " + m.vocabSize() + ", adapters "
                + AdapterSpec.names("serve", adapters) + ") on " + server.uri());
        root.out.flush();
        try {
            server.awaitClose(); // until the process stops (the hook closes the server) or this thread is interrupted
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            server.close();
            m.close();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) { // the process is stopping: the hook runs anyway
            }
        }
        return 0;
    }
}
