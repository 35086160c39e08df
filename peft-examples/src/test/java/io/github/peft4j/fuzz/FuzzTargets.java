package io.github.peft4j.fuzz;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.BadLinePolicy;
import io.github.peft4j.data.ClassificationData;
import io.github.peft4j.data.InstructionData;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.examples.onnx.OnnxBertImporter;
import io.github.peft4j.generate.serve.LogitsServer;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.TensorFile;
import io.github.peft4j.io.TorchBinFile;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.Fixtures;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.HttpURLConnection;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Every parser peft4j exposes to files or requests from outside, by name, with how a fuzzer's bytes reach it.
 *
 * <p>To fuzz one more parser: add an entry to {@link #ALL} (a {@link Target} that writes the bytes where the parser
 * reads them and calls the public API), a three-line {@code @FuzzTest} method in {@link ParserFuzzTest} with the same
 * name, and seed files under {@code src/test/resources/io/github/peft4j/fuzz/ParserFuzzTestInputs/<method>/}.
 * {@code scripts/fuzz.sh} picks the new method up by itself.
 *
 * <p>Targets run the parser through its public entry point ({@code SafeTensorsFile.open}, {@code Models.load},
 * {@code PeftModel.loadAdapter}, the server's HTTP endpoints...), so what escapes them is what a user would see.
 */
final class FuzzTargets {
    private FuzzTargets() {}

    /** Feeds one fuzzer input to a parser. */
    @FunctionalInterface
    interface Target {
        /**
         * @param data the fuzzer's bytes
         * @param scratch a directory of this target's own, reused between inputs
         */
        void parse(byte[] data, Path scratch) throws Exception;
    }

    /** The targets, by name (the {@code @FuzzTest} method in {@link ParserFuzzTest} of the same name runs each). */
    static final Map<String, Target> ALL;

    private static final ObjectMapper JSON = new ObjectMapper();

    static {
        Map<String, Target> m = new LinkedHashMap<>();
        m.put("safetensors", FuzzTargets::safetensors);
        m.put("torchBin", FuzzTargets::torchBin);
        m.put("torchPickle", FuzzTargets::torchPickle);
        m.put("modelConfig", FuzzTargets::modelConfig);
        m.put("shardIndex", FuzzTargets::shardIndex);
        m.put("adapterConfig", FuzzTargets::adapterConfig);
        m.put("adapterHubConfig", FuzzTargets::adapterHubConfig);
        m.put("jsonLines", FuzzTargets::jsonLines);
        m.put("csv", FuzzTargets::csv);
        m.put("tokenizerJson", FuzzTargets::tokenizerJson);
        m.put("onnx", FuzzTargets::onnx);
        m.put("bnbQuantState", FuzzTargets::bnbQuantState);
        m.put("serverRequest", FuzzTargets::serverRequest);
        m.put("conll", FuzzTargets::conll);
        m.put("brownText", FuzzTargets::brownText);
        m.put("llama2cTokenizer", FuzzTargets::llama2cTokenizer);
        m.put("llama2cCheckpoint", FuzzTargets::llama2cCheckpoint);
        ALL = Collections.unmodifiableMap(m);
    }

    // ---------------------------------------------------------------- token classification and llama2.c files

    /** A CoNLL file (word and tag per line, blank lines between sentences); the first byte picks the bad-line policy. */
    static void conll(byte[] data, Path scratch) throws IOException {
        BadLinePolicy policy = data.length > 0 && (data[0] & 1) == 1 ? BadLinePolicy.STOP : BadLinePolicy.SKIP;
        Path f = write(scratch.resolve("x.conll"), data.length > 0 ? Arrays.copyOfRange(data, 1, data.length) : data);
        io.github.peft4j.data.ConllData.of(tokenizer(), 32, null, policy).read(f);
    }

    /** One Brown corpus text ({@code word/tag} tokens, sentences on lines), as the POS job parses it. */
    static void brownText(byte[] data, Path scratch) {
        io.github.peft4j.examples.pos.BrownCorpus.parse("ca01", new String(data, StandardCharsets.UTF_8));
    }

    /**
     * A llama2.c tokenizer.bin: the first byte gives the vocabulary size (259 + its low 6 bits, as the model header
     * would), the rest is the file; a parsed tokenizer encodes and decodes a sentence with non-ASCII text and
     * exports its tokenizer.json.
     */
    static void llama2cTokenizer(byte[] data, Path scratch) {
        int vocab = 259 + (data.length > 0 ? data[0] & 0x3f : 0);
        byte[] file = data.length > 0 ? Arrays.copyOfRange(data, 1, data.length) : data;
        io.github.peft4j.data.Llama2cTokenizer tok = io.github.peft4j.data.Llama2cTokenizer.parse(file, vocab,
                "tokenizer.bin");
        int[] ids = tok.encode("Once upon a time, \u00e9t\u00e9 \u65e5\u672c \ud83d\ude00", true);
        tok.decode(ids);
        tok.tokenizerJsonBytes();
    }

    /** A llama2.c model.bin: header, size and every tensor read. */
    static void llama2cCheckpoint(byte[] data, Path scratch) {
        io.github.peft4j.examples.llama2c.Llama2cCheckpoint.read(ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN),
                "model.bin");
    }

    // ---------------------------------------------------------------- weights files

    /** A whole {@code .safetensors} file: header, then every tensor loaded. */
    static void safetensors(byte[] data, Path scratch) throws IOException {
        Path f = write(scratch.resolve("x.safetensors"), data);
        try (NDManager m = NDManager.newBaseManager(); SafeTensorsFile st = SafeTensorsFile.open(f)) {
            for (String name : st.names()) {
                st.load(name, m).close();
            }
        }
    }

    /** A whole torch.save zip ({@code .bin}): zip, data.pkl, records, every tensor loaded. */
    static void torchBin(byte[] data, Path scratch) throws IOException {
        Path f = write(scratch.resolve("x.bin"), data);
        loadAll(f);
    }

    /**
     * A data.pkl inside a well-formed torch.save zip whose storage records are there ({@code 0}..{@code 3}: 64 bytes
     * each), so the fuzzer reaches the restricted unpickler and the tensor checks at once.
     */
    static void torchPickle(byte[] data, Path scratch) throws IOException {
        ByteArrayOutputStream zip = new ByteArrayOutputStream();
        try (ZipOutputStream z = new ZipOutputStream(zip)) {
            z.setLevel(0);
            entry(z, "archive/data.pkl", data);
            entry(z, "archive/byteorder", "little".getBytes(StandardCharsets.US_ASCII));
            for (int i = 0; i < 4; i++) {
                byte[] rec = new byte[64];
                Arrays.fill(rec, (byte) (i + 1));
                entry(z, "archive/data/" + i, rec);
            }
            entry(z, "archive/version", "3\n".getBytes(StandardCharsets.US_ASCII));
        }
        Path f = write(scratch.resolve("p.bin"), zip.toByteArray());
        loadAll(f);
    }

    private static void entry(ZipOutputStream z, String name, byte[] bytes) throws IOException {
        z.putNextEntry(new ZipEntry(name));
        z.write(bytes);
        z.closeEntry();
    }

    private static void loadAll(Path f) {
        try (NDManager m = NDManager.newBaseManager(); TensorFile<?> t = TorchBinFile.open(f)) {
            for (String name : t.names()) {
                t.load(name, m).close();
            }
        }
    }

    // ---------------------------------------------------------------- configs

    /** A model's {@code config.json} next to the tiny Llama checkpoint; the model is built and loaded. */
    static void modelConfig(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("model");
        linkOnce(Fixtures.dir("llama_lora").resolve("base/model.safetensors"), dir.resolve("model.safetensors"));
        write(dir.resolve("config.json"), data);
        try (TransformerModel model = Models.load(dir)) {
            model.numParameters();
        }
    }

    /**
     * A sharded checkpoint's {@code model.safetensors.index.json} next to the tiny Llama's weights as its one shard
     * ({@code model-00001-of-00001.safetensors}) and its config; the model is built and loaded.
     */
    static void shardIndex(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("sharded");
        linkOnce(Fixtures.dir("llama_lora").resolve("base/model.safetensors"), dir.resolve("model-00001-of-00001.safetensors"));
        linkOnce(Fixtures.dir("llama_lora").resolve("base/config.json"), dir.resolve("config.json"));
        write(dir.resolve("model.safetensors.index.json"), data);
        try (TransformerModel model = Models.load(dir)) {
            model.numParameters();
        }
    }

    private static PeftModel llama;
    private static PeftModel bert;

    private static synchronized PeftModel llama() {
        if (llama == null) {
            llama = PeftModel.wrap(Models.load(Fixtures.dir("llama_lora").resolve("base")));
        }
        return llama;
    }

    private static synchronized PeftModel bert() {
        if (bert == null) {
            bert = PeftModel.wrap(Models.load(adapterHubFixtures().resolve("bases/bert")));
        }
        return bert;
    }

    static Path adapterHubFixtures() {
        Path p = Fixtures.root().getParent().getParent().getParent().getParent().getParent().getParent()
                .resolve("peft-adapters/src/test/resources/fixtures/adapterhub");
        if (!Files.isDirectory(p)) {
            throw new IllegalStateException("AdapterHub fixtures not found at " + p);
        }
        return p;
    }

    /** An HF PEFT {@code adapter_config.json} next to a LoRA adapter's weights, loaded onto the tiny Llama. */
    static void adapterConfig(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("adapter");
        linkOnce(Fixtures.dir("llama_lora").resolve("adapter/adapter_model.safetensors"),
                dir.resolve("adapter_model.safetensors"));
        write(dir.resolve("adapter_config.json"), data);
        loadAndDrop(llama(), dir);
    }

    /** An AdapterHub {@code adapter_config.json} next to a seq_bn adapter's weights and head, loaded onto BERT. */
    static void adapterHubConfig(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("adapterhub");
        Path src = adapterHubFixtures().resolve("bert_seq_bn/adapter");
        for (String f : List.of("adapter.safetensors", "head_config.json", "model_head.safetensors")) {
            linkOnce(src.resolve(f), dir.resolve(f));
        }
        write(dir.resolve("adapter_config.json"), data);
        loadAndDrop(bert(), dir);
    }

    private static void loadAndDrop(PeftModel peft, Path dir) {
        synchronized (peft) {
            try {
                peft.loadAdapter(dir, "fz", false);
            } finally {
                if (peft.adapterNames().contains("fz")) {
                    peft.deleteAdapter("fz");
                }
            }
        }
    }

    // ---------------------------------------------------------------- data

    private static Tokenizer tokenizer;

    private static synchronized Tokenizer tokenizer() {
        if (tokenizer == null) {
            tokenizer = Tokenizer.load(Fixtures.root().getParent().resolve("tokenizers/bpe"));
        }
        return tokenizer;
    }

    /**
     * A JSON-lines (or JSON array) file read as classification data and as instruction data; the first byte picks
     * the bad-line policy.
     */
    static void jsonLines(byte[] data, Path scratch) throws IOException {
        BadLinePolicy policy = data.length > 0 && (data[0] & 1) == 1 ? BadLinePolicy.STOP : BadLinePolicy.SKIP;
        Path f = write(scratch.resolve("x.jsonl"), data.length > 0 ? Arrays.copyOfRange(data, 1, data.length) : data);
        try {
            ClassificationData.builder(tokenizer()).maxLength(32).policy(policy).build().read(f);
        } finally {
            InstructionData.builder(tokenizer()).maxLength(32).policy(policy).build().read(f);
        }
    }

    /** A CSV file read as classification data; the first byte picks the bad-line policy. */
    static void csv(byte[] data, Path scratch) throws IOException {
        BadLinePolicy policy = data.length > 0 && (data[0] & 1) == 1 ? BadLinePolicy.STOP : BadLinePolicy.SKIP;
        Path f = write(scratch.resolve("x.csv"), data.length > 0 ? Arrays.copyOfRange(data, 1, data.length) : data);
        ClassificationData.builder(tokenizer()).maxLength(32).policy(policy).build().read(f);
    }

    /** A {@code tokenizer.json}, loaded and used to encode and decode a sentence. */
    static void tokenizerJson(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("tok");
        write(dir.resolve("tokenizer.json"), data);
        try (Tokenizer t = Tokenizer.load(dir)) {
            int[] ids = t.encode("Hello, fuzzing world: 12 apples.", true);
            t.decode(ids, true);
        }
    }

    // ---------------------------------------------------------------- ONNX, bnb

    /** An ONNX protobuf file given to the BERT importer. */
    static void onnx(byte[] data, Path scratch) throws IOException {
        Path f = write(scratch.resolve("x.onnx"), data);
        OnnxBertImporter.read(f);
    }

    private static Map<String, Object[]> bnbTensors;

    /** The bnb fixture checkpoint's tensors as name to {dtype, shape, bytes}, in file order. */
    private static synchronized Map<String, Object[]> bnbTensors() throws IOException {
        if (bnbTensors == null) {
            byte[] file = Files.readAllBytes(bnbBase().resolve("model.safetensors"));
            long n = ByteBuffer.wrap(file, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            JsonNode header = JSON.readTree(Arrays.copyOfRange(file, 8, 8 + (int) n));
            Map<String, Object[]> out = new LinkedHashMap<>();
            for (Map.Entry<String, JsonNode> e : header.properties()) {
                if (e.getKey().equals("__metadata__")) {
                    continue;
                }
                JsonNode v = e.getValue();
                int begin = 8 + (int) n + v.get("data_offsets").get(0).asInt();
                int end = 8 + (int) n + v.get("data_offsets").get(1).asInt();
                out.put(e.getKey(), new Object[] {v.get("dtype").asText(), v.get("shape"), Arrays.copyOfRange(file, begin, end)});
            }
            bnbTensors = out;
        }
        return bnbTensors;
    }

    private static Path bnbBase() {
        return Fixtures.root().getParent().resolve("bnb/llama_nf4_dq/base");
    }

    /**
     * A bitsandbytes quant state (the JSON bytes of {@code ...q_proj.weight.quant_state.bitsandbytes__nf4}) in the
     * tiny NF4 Llama checkpoint, which is then loaded packed.
     */
    static void bnbQuantState(byte[] data, Path scratch) throws IOException {
        Path dir = scratch.resolve("bnb");
        linkOnce(bnbBase().resolve("config.json"), dir.resolve("config.json"));
        String key = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4";
        ObjectNode header = JSON.createObjectNode();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        for (Map.Entry<String, Object[]> e : bnbTensors().entrySet()) {
            byte[] bytes = e.getKey().equals(key) ? data : (byte[]) e.getValue()[2];
            ObjectNode t = header.putObject(e.getKey());
            t.put("dtype", (String) e.getValue()[0]);
            if (e.getKey().equals(key)) {
                t.putArray("shape").add(bytes.length);
            } else {
                t.set("shape", (JsonNode) e.getValue()[1]);
            }
            t.putArray("data_offsets").add(body.size()).add(body.size() + bytes.length);
            body.write(bytes);
        }
        header.putObject("__metadata__").put("format", "pt");
        byte[] h = JSON.writeValueAsBytes(header);
        ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, h.length);
        ByteArrayOutputStream file = new ByteArrayOutputStream();
        file.write(len.array());
        file.write(h);
        file.write(body.toByteArray());
        write(dir.resolve("model.safetensors"), file.toByteArray());
        try (TransformerModel model = Models.load(dir)) {
            model.numParameters();
        }
    }

    // ---------------------------------------------------------------- server

    private static LogitsServer server;
    private static String sessionId;

    private static synchronized LogitsServer server() throws IOException {
        if (server == null) {
            PeftModel peft = PeftModel.wrap(Models.load(Fixtures.dir("llama_lora").resolve("base")));
            peft.loadAdapter(Fixtures.dir("llama_mixed_batch").resolve("a"), "a", false);
            peft.loadAdapter(Fixtures.dir("llama_mixed_batch").resolve("b"), "b", false);
            server = LogitsServer.start(peft, LogitsServer.Options.defaults().withHost("127.0.0.1").withPort(0)
                    .withMaxSessions(64).withMaxBodyBytes(1 << 16).withMaxNewTokens(4));
            HttpURLConnection c = post("/sessions", "{\"input_ids\": [[1, 2, 3]]}".getBytes(StandardCharsets.UTF_8));
            JsonNode opened = JSON.readTree(c.getInputStream());
            sessionId = opened.get("session").asText();
        }
        return server;
    }

    private static final String[] ENDPOINTS = {"/sessions", "/logits", "/generate", "/sessions/{id}/next"};

    /**
     * A request body posted to one of the server's endpoints (the first byte picks it: open a session, logits,
     * generate, next token of an open session). The server must answer 200, or a 4xx with a one-line error; a 500
     * (an exception the server did not expect) is a finding.
     */
    static void serverRequest(byte[] data, Path scratch) throws IOException {
        server();
        String path = ENDPOINTS[data.length == 0 ? 0 : (data[0] & 0xFF) % ENDPOINTS.length].replace("{id}", sessionId);
        byte[] body = data.length == 0 ? data : Arrays.copyOfRange(data, 1, data.length);
        HttpURLConnection c = post(path, body);
        int status = c.getResponseCode();
        InputStream err = status >= 400 ? c.getErrorStream() : c.getInputStream();
        String answer = err == null ? "" : new String(err.readAllBytes(), StandardCharsets.UTF_8);
        if (status == 200) {
            JsonNode n = JSON.readTree(answer);
            if (path.equals("/sessions") && n.has("session")) { // keep the session table from filling up
                HttpURLConnection d = (HttpURLConnection) server.uri().resolve("/sessions/" + n.get("session").asText())
                        .toURL().openConnection();
                d.setRequestMethod("DELETE");
                d.getResponseCode();
                d.disconnect();
            }
            return;
        }
        String error = JSON.readTree(answer).path("error").asText("");
        if (status >= 500) {
            throw new IllegalStateException("server answered " + status + " to " + path + ": " + error);
        }
        throw new PeftException(path + ": HTTP " + status + ": " + error);
    }

    private static HttpURLConnection post(String path, byte[] body) throws IOException {
        HttpURLConnection c = (HttpURLConnection) URI.create(server.uri().toString()).resolve(path).toURL().openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setConnectTimeout(10_000);
        c.setReadTimeout(60_000);
        c.setRequestProperty("Content-Type", "application/json");
        try (OutputStream os = c.getOutputStream()) {
            os.write(body);
        }
        return c;
    }

    // ---------------------------------------------------------------- files

    static Path write(Path file, byte[] data) {
        try {
            Files.createDirectories(file.getParent());
            Files.write(file, data);
        } catch (IOException e) {
            throw new UncheckedIOException("fuzz harness cannot write " + file, e);
        }
        return file;
    }

    private static void linkOnce(Path src, Path dst) throws IOException {
        if (!Files.exists(dst)) {
            Files.createDirectories(dst.getParent());
            Files.copy(src, dst);
        }
    }
}
