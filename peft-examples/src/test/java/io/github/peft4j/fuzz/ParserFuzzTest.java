package io.github.peft4j.fuzz;

import com.code_intelligence.jazzer.api.BugDetectors;
import com.code_intelligence.jazzer.junit.FuzzTest;

/**
 * One coverage-guided fuzz test per parser ({@link FuzzTargets}). In a normal test run (regression mode) each method
 * replays its committed inputs under {@code src/test/resources/io/github/peft4j/fuzz/ParserFuzzTestInputs/<method>/}
 * (seeds and every input that once found a bug); with {@code JAZZER_FUZZ=1} one method is fuzzed
 * ({@code scripts/fuzz.sh} runs them all, {@value #RUNS} inputs each). The pass condition is {@link FuzzHarness}'s.
 */
class ParserFuzzTest {
    /** Inputs per target in a campaign (libFuzzer's {@code -runs}). */
    static final long RUNS = 10_000;

    /** Fuzzes a .safetensors file (header and body). */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void safetensors(byte[] data) throws Exception {
        FuzzHarness.run("safetensors", data);
    }

    /** Fuzzes a torch.save .bin zip. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void torchBin(byte[] data) throws Exception {
        FuzzHarness.run("torchBin", data);
    }

    /** Fuzzes the data.pkl of a torch.save zip (restricted unpickler). */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void torchPickle(byte[] data) throws Exception {
        FuzzHarness.run("torchPickle", data);
    }

    /** Fuzzes a model's config.json. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void modelConfig(byte[] data) throws Exception {
        FuzzHarness.run("modelConfig", data);
    }

    /** Fuzzes a sharded checkpoint's model.safetensors.index.json. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void shardIndex(byte[] data) throws Exception {
        FuzzHarness.run("shardIndex", data);
    }

    /** Fuzzes an HF PEFT adapter_config.json. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void adapterConfig(byte[] data) throws Exception {
        FuzzHarness.run("adapterConfig", data);
    }

    /** Fuzzes an AdapterHub adapter_config.json. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void adapterHubConfig(byte[] data) throws Exception {
        FuzzHarness.run("adapterHubConfig", data);
    }

    /** Fuzzes a JSON-lines / JSON-array data file. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void jsonLines(byte[] data) throws Exception {
        FuzzHarness.run("jsonLines", data);
    }

    /** Fuzzes a CSV data file. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void csv(byte[] data) throws Exception {
        FuzzHarness.run("csv", data);
    }

    /** Fuzzes a tokenizer.json. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void tokenizerJson(byte[] data) throws Exception {
        FuzzHarness.run("tokenizerJson", data);
    }

    /** Fuzzes an ONNX model for the BERT importer. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void onnx(byte[] data) throws Exception {
        FuzzHarness.run("onnx", data);
    }

    /** Fuzzes a bitsandbytes quant-state JSON. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void bnbQuantState(byte[] data) throws Exception {
        FuzzHarness.run("bnbQuantState", data);
    }

    /** Fuzzes a request body to peft4j serve. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void serverRequest(byte[] data) throws Exception {
        // the target talks to its own server on the loopback interface; any other destination stays a finding
        BugDetectors.allowNetworkConnections((host, port) -> host.equals("localhost") || host.equals("127.0.0.1"));
        FuzzHarness.run("serverRequest", data);
    }

    /** Fuzzes a CoNLL token-classification file. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void conll(byte[] data) throws Exception {
        FuzzHarness.run("conll", data);
    }

    /** Fuzzes one Brown corpus text. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void brownText(byte[] data) throws Exception {
        FuzzHarness.run("brownText", data);
    }

    /** Fuzzes a llama2.c tokenizer.bin. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void llama2cTokenizer(byte[] data) throws Exception {
        FuzzHarness.run("llama2cTokenizer", data);
    }

    /** Fuzzes a llama2.c model.bin. */
    @FuzzTest(maxExecutions = RUNS, maxDuration = "30m")
    void llama2cCheckpoint(byte[] data) throws Exception {
        FuzzHarness.run("llama2cCheckpoint", data);
    }
}
