package io.github.peft4j.generate.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.AutoPeftModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.proxy.ProxyTuningLm;
import io.github.peft4j.testing.Fixtures;
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link LogitsServer} and {@link RemoteLm} on loopback over the tiny Llama with two LoRA adapters (the
 * {@code llama_mixed_batch} fixture): every endpoint answers what the model gives in process, bad requests get
 * a 4xx JSON error and leave the server running, sessions are bounded, eight concurrent clients all get correct
 * answers, and proxy-tuning with the base model M behind the server gives the transformers reference ids.
 */
class LogitsServerTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String MIXED = "llama_mixed_batch";
    private static final String PROXY = "llama_proxy_tuning";
    private static final int BODY_LIMIT = 16 * 1024;
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

    private static TransformerModel model;
    private static PeftModel peft;
    private static LogitsServer server;
    private static long[][] ids;
    private static long[][] mask;

    @BeforeAll
    static void start() {
        Path base = Fixtures.dir(Fixtures.json(MIXED, "logits.json").get("base_case").asText()).resolve("base");
        model = AutoPeftModel.loadBase(base, Fixtures.dir(MIXED).resolve("a"), Device.cpu(), DataType.FLOAT32);
        peft = PeftModel.wrap(model);
        peft.loadAdapter(Fixtures.dir(MIXED).resolve("a"), "a", false);
        peft.loadAdapter(Fixtures.dir(MIXED).resolve("b"), "b", false);
        peft.setActive("a", "b"); // as serve --adapter a=.. --adapter b=.. does
        server = LogitsServer.start(peft, LogitsServer.Options.defaults().withMaxBodyBytes(BODY_LIMIT).withThreads(4));
        JsonNode in = Fixtures.json(MIXED, "input_ids.json");
        ids = Fixtures.matrix(in.get("input_ids"));
        mask = Fixtures.matrix(in.get("attention_mask"));
    }

    @AfterAll
    static void stop() {
        if (server != null) {
            server.close();
        }
        if (model != null) {
            model.close();
        }
    }

    record Resp(int status, JsonNode json, String text) {
    }

    static Resp send(HttpRequest.Builder b) throws Exception {
        HttpResponse<String> r = HTTP.send(b.timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
        return new Resp(r.statusCode(), JSON.readTree(r.body()), r.body());
    }

    static Resp post(LogitsServer s, String path, String body) throws Exception {
        return send(HttpRequest.newBuilder(s.uri().resolve(path)).POST(HttpRequest.BodyPublishers.ofString(body)));
    }

    static Resp get(LogitsServer s, String path) throws Exception {
        return send(HttpRequest.newBuilder(s.uri().resolve(path)).GET());
    }

    static Resp delete(LogitsServer s, String path) throws Exception {
        return send(HttpRequest.newBuilder(s.uri().resolve(path)).DELETE());
    }

    static String startBody(long[][] ids, long[][] mask, List<String> rows) throws Exception {
        StringBuilder sb = new StringBuilder("{\"input_ids\": ").append(JSON.writeValueAsString(ids));
        if (mask != null) {
            sb.append(", \"attention_mask\": ").append(JSON.writeValueAsString(mask));
        }
        if (rows != null) {
            sb.append(", \"row_adapters\": ").append(JSON.writeValueAsString(rows));
        }
        return sb.append('}').toString();
    }

    static float[] flat(JsonNode logits) {
        List<Float> out = new ArrayList<>();
        flatten(logits, out);
        float[] f = new float[out.size()];
        for (int i = 0; i < f.length; i++) {
            f[i] = out.get(i);
        }
        return f;
    }

    private static void flatten(JsonNode n, List<Float> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add(Float.parseFloat(n.asText()));
        }
    }

    /** The in-process logits of a session: start, then each of the tokens in turn. */
    static List<float[]> inProcess(long[][] ids, long[][] mask, List<String> rows, long[][] steps) {
        List<float[]> out = new ArrayList<>();
        try (DecodeSession s = LanguageModel.of(peft).open(rows == null ? CallContext.NONE : CallContext.rowAdapters(rows), true);
                NDScope scope = new NDScope()) {
            out.add(s.start(ids, mask).toFloatArray());
            for (long[] t : steps) {
                out.add(s.next(t).toFloatArray());
            }
        }
        return out;
    }

    private static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length, "logits size");
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    @Test
    void healthSessionsAndCloseAnswerAsInProcess() throws Exception {
        Resp h = get(server, "/");
        assertEquals(200, h.status(), h.text());
        assertEquals("ok", h.json().get("status").asText());
        assertEquals(128, h.json().get("vocab_size").asInt());
        assertEquals("[\"a\",\"b\"]", h.json().get("adapters").toString());
        assertEquals(2, h.json().get("eos_token_ids").get(0).asInt());

        long[][] steps = {{5, 9}, {77, 3}, {12, 120}};
        List<float[]> expected = inProcess(ids, mask, null, steps);
        Resp s = post(server, "/sessions", startBody(ids, mask, null));
        assertEquals(200, s.status(), s.text());
        assertEquals("[2,128]", s.json().get("shape").toString());
        String id = s.json().get("session").asText();
        assertArrayEquals(expected.get(0), flat(s.json().get("logits")), "start");
        for (int t = 0; t < steps.length; t++) {
            Resp n = post(server, "/sessions/" + id + "/next", JSON.writeValueAsString(java.util.Map.of("tokens", steps[t])));
            assertEquals(200, n.status(), n.text());
            assertArrayEquals(expected.get(t + 1), flat(n.json().get("logits")), "next " + t);
        }
        assertEquals(200, delete(server, "/sessions/" + id).status());
        Resp gone = post(server, "/sessions/" + id + "/next", "{\"tokens\": [1, 2]}");
        assertEquals(404, gone.status(), gone.text());
        assertTrue(gone.json().get("error").asText().contains("unknown session"), gone.text());
        assertEquals(404, delete(server, "/sessions/" + id).status());

        Resp s2 = post(server, "/sessions", startBody(ids, mask, null));
        assertEquals(200, post(server, "/sessions/" + s2.json().get("session").asText() + "/close", "").status());
        assertEquals(0, server.openSessions());
    }

    @Test
    void rowAdaptersThroughTheServerEqualInProcessAndHf() throws Exception {
        JsonNode meta = Fixtures.json(MIXED, "logits.json");
        try (NDManager nd = NDManager.newBaseManager()) {
            for (JsonNode batch : meta.get("mixed_batches")) {
                List<String> rows = new ArrayList<>();
                batch.get("adapter_names").forEach(n -> rows.add(n.asText()));
                Resp r = post(server, "/logits", startBody(ids, mask, rows));
                assertEquals(200, r.status(), r.text());
                assertEquals("[2,8,128]", r.json().get("shape").toString());
                float[] got = flat(r.json().get("logits"));
                float[] local;
                try (NDScope scope = new NDScope()) {
                    ModelInput in = new ModelInput(nd.create(flat2(ids), new Shape(2, 8)), null,
                            nd.create(flat2(mask), new Shape(2, 8)), null, null, null, false).withRowAdapters(rows);
                    local = peft.forward(in).logits().toFloatArray();
                }
                assertArrayEquals(local, got, "POST /logits " + rows);
                float[] hf = Fixtures.logits(nd, MIXED, "logits.json", batch.get("key").asText()).toFloatArray();
                double max = 0;
                for (int i = 0; i < hf.length; i++) {
                    int b = i / (8 * 128);
                    int p = i / 128 % 8;
                    if (mask[b][p] == 1) {
                        max = Math.max(max, Math.abs(hf[i] - got[i]));
                    }
                }
                System.out.printf("parity serve /logits rows %s: in-process bit-equal, HF max|diff| = %.3g%n", rows, max);
                assertTrue(max < 1e-4, rows + ": " + max);

                long[][] steps = {{4, 4}, {60, 61}};
                List<float[]> expected = inProcess(ids, mask, rows, steps);
                try (RemoteLm remote = RemoteLm.connect(server.uri());
                        DecodeSession s = remote.open(CallContext.rowAdapters(rows), true);
                        NDScope scope = new NDScope()) {
                    assertArrayEquals(expected.get(0), s.start(ids, mask).toFloatArray(), "session start " + rows);
                    for (int t = 0; t < steps.length; t++) {
                        assertArrayEquals(expected.get(t + 1), s.next(steps[t]).toFloatArray(), "session next " + rows);
                    }
                }
            }
        }
    }

    private static long[] flat2(long[][] a) {
        return Arrays.stream(a).flatMapToLong(Arrays::stream).toArray();
    }

    @Test
    void greedyIdsViaRemoteLmAndGenerateEqualInProcess() throws Exception {
        GenerationConfig greedy = GenerationConfig.greedy(10);
        for (List<String> rows : Arrays.asList(null, List.of("b", CallContext.BASE))) {
            CallContext ctx = rows == null ? CallContext.NONE : CallContext.rowAdapters(rows);
            GenerationResult local = Generator.of(peft).generate(ids, mask, greedy, ctx);
            try (RemoteLm remote = RemoteLm.connect(server.uri())) {
                assertEquals(List.of("a", "b"), remote.adapters());
                GenerationResult viaRemote = Generator.of(remote).generate(ids, mask, greedy, ctx);
                assertArrayEquals(local.tokens(), viaRemote.tokens(), "RemoteLm " + rows);
                assertArrayEquals(local.lengths(), viaRemote.lengths());
                GenerationResult noCache = Generator.of(remote).generate(ids, mask, greedy.toBuilder().useCache(false).build(), ctx);
                assertArrayEquals(local.tokens(), noCache.tokens(), "RemoteLm without cache " + rows);
            }
            Resp g = post(server, "/generate", startBody(ids, mask, rows).replace("}", ", \"max_new_tokens\": 10}"));
            assertEquals(200, g.status(), g.text());
            assertEquals(JSON.valueToTree(local.tokens()), g.json().get("generated_ids"), "POST /generate " + rows);
            System.out.println("serve greedy ids " + rows + " = " + g.json().get("generated_ids") + " (in process the same)");
        }
        GenerationConfig sampled = GenerationConfig.builder().maxNewTokens(8).doSample(true).temperature(0.8).topK(20)
                .topP(0.9).seed(7).build();
        GenerationResult local = Generator.of(peft).generate(ids, mask, sampled);
        try (RemoteLm remote = RemoteLm.connect(server.uri())) {
            assertArrayEquals(local.tokens(), Generator.of(remote).generate(ids, mask, sampled).tokens(), "sampled");
        }
        Resp g = post(server, "/generate", startBody(ids, mask, null).replace("}",
                ", \"max_new_tokens\": 8, \"do_sample\": true, \"temperature\": 0.8, \"top_k\": 20, \"top_p\": 0.9, \"seed\": 7}"));
        assertEquals(JSON.valueToTree(local.tokens()), g.json().get("generated_ids"), "POST /generate sampled");
    }

    @Test
    void badRequestsGet4xxJsonAndTheServerGoesOn() throws Exception {
        String s = post(server, "/sessions", startBody(ids, mask, null)).json().get("session").asText();
        Object[][] cases = {
            {"/sessions", "{\"input_ids\": [[1, 2", 400, "malformed JSON"},
            {"/sessions", "[1, 2]", 400, "must be a JSON object"},
            {"/sessions", "", 400, "must be a JSON object"},
            {"/sessions", "{\"input_ids\": [[1, 2]], \"temperature\": 1}", 400, "unknown field 'temperature'"},
            {"/sessions", "{\"input_ids\": [[1, 128]]}", 400, "outside the vocabulary [0, 128)"},
            {"/sessions", "{\"input_ids\": [[1, -1]]}", 400, "outside the vocabulary"},
            {"/sessions", "{\"input_ids\": [[1, 2.5]]}", 400, "expected an integer"},
            {"/sessions", "{\"input_ids\": [[1, 2], [3]]}", 400, "different length"},
            {"/sessions", "{\"input_ids\": []}", 400, "non-empty"},
            {"/sessions", "{\"input_ids\": [[1, 2]], \"attention_mask\": [[1, 0]]}", 400, "LEFT padding"},
            {"/sessions", "{\"input_ids\": [[1, 2]], \"row_adapters\": [\"c\"]}", 400, "'c' is not a loaded adapter"},
            {"/sessions", "{\"input_ids\": [[1, 2]], \"row_adapters\": [\"a\", \"b\"]}", 400, "2 adapters for 1 rows"},
            {"/sessions/" + s + "/next", "{\"tokens\": [1]}", 400, "one token per row (2)"},
            {"/sessions/" + s + "/next", "{\"tokens\": [1, 500]}", 400, "outside the vocabulary [0, 128)"},
            {"/sessions/" + s + "/next", "{\"tokens\": \"x\"}", 400, "expected an array"},
            {"/sessions/nosuch/next", "{\"tokens\": [1, 2]}", 404, "unknown session 'nosuch'"},
            {"/logits", "{\"input_ids\": [[1, 999]]}", 400, "outside the vocabulary"},
            {"/generate", "{\"input_ids\": [[1, 2]], \"max_new_tokens\": 0}", 400, "max_new_tokens: 0 is outside"},
            {"/generate", "{\"input_ids\": [[1, 2]], \"top_p\": 2.0, \"do_sample\": true}", 400, "top"},
            {"/nothing", "{}", 404, "no endpoint POST /nothing"},
            {"/", "{}", 405, "use GET"},
        };
        for (Object[] c : cases) {
            Resp r = post(server, (String) c[0], (String) c[1]);
            assertEquals((int) c[2], r.status(), c[0] + " " + c[1] + " -> " + r.text());
            assertTrue(r.json().get("error").asText().contains((String) c[3]), c[0] + " " + c[1] + " -> " + r.text());
            assertFalse(r.text().contains("\n"), "one line: " + r.text());
        }
        byte[] big = ("{\"input_ids\": [[" + "1, ".repeat(BODY_LIMIT / 3) + "1]]}").getBytes(StandardCharsets.UTF_8);
        Resp declared = send(HttpRequest.newBuilder(server.uri().resolve("/sessions")).POST(HttpRequest.BodyPublishers.ofByteArray(big)));
        assertEquals(413, declared.status(), declared.text());
        assertTrue(declared.json().get("error").asText().contains("more than the limit of " + BODY_LIMIT), declared.text());
        Resp chunked = send(HttpRequest.newBuilder(server.uri().resolve("/sessions"))
                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(big))));
        assertEquals(413, chunked.status(), chunked.text());

        // the server and the session opened before are still fine
        assertEquals("ok", get(server, "/").json().get("status").asText());
        Resp n = post(server, "/sessions/" + s + "/next", "{\"tokens\": [5, 9]}");
        assertEquals(200, n.status(), n.text());
        assertArrayEquals(inProcess(ids, mask, null, new long[][] {{5, 9}}).get(1), flat(n.json().get("logits")));
        assertEquals(200, delete(server, "/sessions/" + s).status());
    }

    @Test
    void sessionsAreBoundedInCountAndIdleTime() throws Exception {
        try (LogitsServer small = LogitsServer.start(peft, LogitsServer.Options.defaults().withMaxSessions(2)
                .withIdleTimeout(Duration.ofMillis(300)))) {
            String one = post(small, "/sessions", startBody(ids, mask, null)).json().get("session").asText();
            assertEquals(200, post(small, "/sessions", startBody(ids, mask, null)).status());
            Resp full = post(small, "/sessions", startBody(ids, mask, null));
            assertEquals(429, full.status(), full.text());
            assertTrue(full.json().get("error").asText().contains("session table is full (2 open)"), full.text());
            assertEquals(200, delete(small, "/sessions/" + one).status());
            String three = post(small, "/sessions", startBody(ids, mask, null)).json().get("session").asText();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (small.openSessions() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            assertEquals(0, small.openSessions(), "idle sessions closed");
            assertEquals(404, post(small, "/sessions/" + three + "/next", "{\"tokens\": [1, 2]}").status());
            assertEquals(200, post(small, "/sessions", startBody(ids, mask, null)).status(), "room again");
        }
    }

    @Test
    void eightConcurrentClientsAllGetCorrectAnswers() throws Exception {
        int clients = 8;
        int rounds = 4;
        int steps = 6;
        List<List<String>> rowsOf = Arrays.asList(null, List.of("a", "b"), List.of(CallContext.BASE, "a"), List.of("b", "b"));
        long[][][] stepTokens = new long[clients][steps][];
        List<List<float[]>> expected = new ArrayList<>();
        for (int c = 0; c < clients; c++) {
            for (int t = 0; t < steps; t++) {
                stepTokens[c][t] = new long[] {(c * 17 + t * 5) % 128, (c * 31 + t * 3 + 1) % 128};
            }
            expected.add(inProcess(ids, mask, rowsOf.get(c % 4), stepTokens[c]));
        }
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        long t0 = System.nanoTime();
        try {
            List<Future<Double>> done = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                int cc = c;
                done.add(pool.submit(() -> {
                    double worst = 0;
                    try (RemoteLm remote = RemoteLm.connect(server.uri())) {
                        for (int r = 0; r < rounds; r++) {
                            List<String> rows = rowsOf.get(cc % 4);
                            try (DecodeSession s = remote.open(rows == null ? CallContext.NONE : CallContext.rowAdapters(rows), true);
                                    NDScope scope = new NDScope()) {
                                worst = Math.max(worst, maxDiff(expected.get(cc).get(0), s.start(ids, mask).toFloatArray()));
                                for (int t = 0; t < steps; t++) {
                                    worst = Math.max(worst, maxDiff(expected.get(cc).get(t + 1), s.next(stepTokens[cc][t]).toFloatArray()));
                                }
                            }
                        }
                    }
                    return worst;
                }));
            }
            double worst = 0;
            for (Future<Double> f : done) {
                worst = Math.max(worst, f.get(120, TimeUnit.SECONDS)); // a bound on the time: no deadlock, no starvation
            }
            System.out.printf("serve: %d clients x %d sessions x %d steps in %.2f s; max|diff| vs in-process = %.3g%n",
                    clients, rounds, steps + 1, (System.nanoTime() - t0) / 1e9, worst);
            assertEquals(0.0, worst, "every response equals the in-process logits");
        } finally {
            pool.shutdownNow();
        }
        assertEquals(0, server.openSessions());
        assertEquals("ok", get(server, "/").json().get("status").asText());
    }

    @Test
    void proxyTuningWithRemoteBaseGivesTheReferenceIds() throws Exception {
        JsonNode ref = Fixtures.json(PROXY, "proxy.json");
        long[][] pids = Fixtures.matrix(ref.get("input_ids"));
        long[][] pmask = Fixtures.matrix(ref.get("attention_mask"));
        Path base = Fixtures.dir(ref.get("base_case").asText()).resolve("base");
        Path small = Fixtures.dir(PROXY).resolve("small");
        try (TransformerModel m = AutoPeftModel.loadBase(base, null, Device.cpu(), DataType.FLOAT32);
                TransformerModel plus = AutoPeftModel.loadBase(small, Fixtures.dir(PROXY).resolve("small_lora"), Device.cpu(), DataType.FLOAT32);
                TransformerModel minus = AutoPeftModel.loadBase(small, null, Device.cpu(), DataType.FLOAT32);
                LogitsServer plain = LogitsServer.start(PeftModel.wrap(m), LogitsServer.Options.defaults());
                
                RemoteLm remote = RemoteLm.connect(plain.uri())) {
            PeftModel plusPeft = PeftModel.wrap(plus);
            plusPeft.loadAdapter(Fixtures.dir(PROXY).resolve("small_lora"), PeftModel.DEFAULT, false);
            LanguageModel e = LanguageModel.of(plusPeft);
            LanguageModel a = LanguageModel.of(PeftModel.wrap(minus));
            GenerationConfig greedy = GenerationConfig.builder().maxNewTokens(ref.get("max_new_tokens").asInt())
                    .eosTokenIds().build();
            for (String alpha : new String[] {"1.0", "0.5"}) {
                double al = Double.parseDouble(alpha);
                int[][] viaServer = Generator.of(ProxyTuningLm.of(remote, e, a, al)).generate(pids, pmask, greedy).tokens();
                int[][] local = Generator.of(ProxyTuningLm.of(LanguageModel.of(m), e, a, al))
                        .generate(pids, pmask, greedy).tokens();
                assertArrayEquals(local, viaServer, "alpha " + alpha + ": remote M vs in-process M");
                assertEquals(ref.get("runs").get(alpha).get("ids"), JSON.valueToTree(viaServer), "alpha " + alpha + ": transformers");
                System.out.println("proxy-tuning with M behind serve, alpha " + alpha + ": ids " + JSON.valueToTree(viaServer)
                        + " = in-process = transformers");
            }
        }
    }
}
