package io.github.peft4j.reliability;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.examples.Peft4jCli;
import io.github.peft4j.testing.Fixtures;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A loopback load test of {@code peft4j serve}: N concurrent clients each send M requests (whole-sequence logits,
 * greedy generation, and decode sessions: open, two next tokens, close), every one with its own input and its own
 * per-row adapters drawn from {a, b, __base__}. Each answer is compared with the answer the same request got when
 * sent alone (a sequential pass first), so a lost, failed or mixed-up response is counted; latencies give p50 and
 * p99. {@link ServeLoadTest} runs a short version in CI; {@link #main} the bigger one.
 */
public final class ServeLoad {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern SERVING = Pattern.compile("serving \\S+ \\(vocab \\d+, adapters \\[.*]\\) on (http://127\\.0\\.0\\.1:\\d+/)");
    static final String[] ADAPTERS = {"a", "b", "__base__"};

    private ServeLoad() {}

    /** A running {@code peft4j serve} (in a thread of this JVM, as the CLI runs it). */
    static final class Serve implements AutoCloseable {
        final Thread thread;
        final URI uri;

        Serve(String... extra) throws InterruptedException {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            PrintStream ps = new PrintStream(out, true, StandardCharsets.UTF_8);
            List<String> args = new ArrayList<>(List.of("serve", "--model",
                    Fixtures.dir("llama_lora").resolve("base").toString(), "--adapter",
                    "a=" + Fixtures.dir("llama_mixed_batch").resolve("a"), "--adapter",
                    "b=" + Fixtures.dir("llama_mixed_batch").resolve("b"), "--port", "0"));
            args.addAll(Arrays.asList(extra));
            thread = new Thread(() -> Peft4jCli.run(args.toArray(new String[0]), ps, ps), "serve-load");
            thread.setDaemon(true);
            thread.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            String found = null;
            while (found == null && System.nanoTime() < deadline && thread.isAlive()) {
                Matcher m = SERVING.matcher(out.toString(StandardCharsets.UTF_8));
                if (m.find()) {
                    found = m.group(1);
                } else {
                    Thread.sleep(50);
                }
            }
            if (found == null) {
                throw new IllegalStateException("serve did not start: " + out.toString(StandardCharsets.UTF_8));
            }
            uri = URI.create(found);
        }

        @Override
        public void close() throws InterruptedException {
            thread.interrupt();
            thread.join(30_000);
        }
    }

    /** One request of the mix: its kind and body, the same for the sequential and the concurrent pass. */
    record Request(int kind, String body, String nextBody) {
        static Request of(long seed) {
            Random r = new Random(seed);
            int kind = r.nextInt(3);
            int rows = 1 + r.nextInt(2);
            int len = 2 + r.nextInt(6);
            StringBuilder ids = new StringBuilder("[");
            StringBuilder adapters = new StringBuilder("[");
            StringBuilder next = new StringBuilder("[");
            for (int i = 0; i < rows; i++) {
                ids.append(i > 0 ? ", [" : "[");
                for (int j = 0; j < len; j++) {
                    ids.append(j > 0 ? ", " : "").append(1 + r.nextInt(120));
                }
                ids.append(']');
                adapters.append(i > 0 ? ", " : "").append('"').append(ADAPTERS[r.nextInt(3)]).append('"');
                next.append(i > 0 ? ", " : "").append(1 + r.nextInt(120));
            }
            String common = "\"input_ids\": " + ids + "], \"row_adapters\": " + adapters + "]";
            return switch (kind) {
                case 0 -> new Request(0, "{" + common + "}", null);
                case 1 -> new Request(1, "{" + common + ", \"max_new_tokens\": " + (1 + r.nextInt(4)) + "}", null);
                default -> new Request(2, "{" + common + "}", "{\"tokens\": " + next + "]}");
            };
        }
    }

    /** The result of a run. */
    record Report(int clients, int requests, int errors, int mismatches, double p50Ms, double p99Ms, double maxMs,
            double seconds) {
        @Override
        public String toString() {
            return String.format("%d clients x %d requests = %d requests in %.1f s (%.1f req/s): %d errors, %d lost or "
                    + "mixed-up responses; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms", clients, requests / clients,
                    requests, seconds, requests / seconds, errors, mismatches, p50Ms, p99Ms, maxMs);
        }
    }

    /** Sends one request of the mix and returns what identifies its answer (the logits or generated ids). */
    static String send(HttpClient http, URI base, Request q) throws Exception {
        return switch (q.kind()) {
            case 0 -> JSON.readTree(post(http, base.resolve("/logits"), q.body())).get("logits").toString();
            case 1 -> JSON.readTree(post(http, base.resolve("/generate"), q.body())).get("generated_ids").toString();
            default -> {
                JsonNode open = JSON.readTree(post(http, base.resolve("/sessions"), q.body()));
                String id = open.get("session").asText();
                JsonNode n1 = JSON.readTree(post(http, base.resolve("/sessions/" + id + "/next"), q.nextBody()));
                JsonNode n2 = JSON.readTree(post(http, base.resolve("/sessions/" + id + "/next"), q.nextBody()));
                post(http, base.resolve("/sessions/" + id + "/close"), "{}");
                yield open.get("logits").toString() + n1.get("logits") + n2.get("logits");
            }
        };
    }

    private static String post(HttpClient http, URI uri, String body) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(120))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new IllegalStateException(uri.getPath() + " answered " + r.statusCode() + ": " + r.body());
        }
        return r.body();
    }

    /**
     * Runs the mix against a server.
     *
     * @param base the server
     * @param clients concurrent clients
     * @param perClient requests each sends
     * @param seed picks the requests
     * @return the report
     */
    static Report run(URI base, int clients, int perClient, long seed) throws Exception {
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(Duration.ofSeconds(10)).build();
        int distinct = Math.min(clients * perClient, 60);
        List<Request> mix = new ArrayList<>();
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < distinct; i++) {
            Request q = Request.of(seed * 1_000_003L + i);
            mix.add(q);
            expected.add(send(http, base, q)); // alone: the reference answer
        }
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        CountDownLatch start = new CountDownLatch(1);
        List<Future<long[]>> futures = new ArrayList<>();
        List<Double> latencies = Collections.synchronizedList(new ArrayList<>());
        for (int c = 0; c < clients; c++) {
            int client = c;
            futures.add(pool.submit(() -> {
                start.await();
                long errors = 0;
                long mismatches = 0;
                for (int k = 0; k < perClient; k++) {
                    int i = (client * perClient + k * 7) % distinct;
                    long t0 = System.nanoTime();
                    try {
                        String got = send(http, base, mix.get(i));
                        if (!got.equals(expected.get(i))) {
                            mismatches++;
                        }
                    } catch (Exception e) {
                        errors++;
                    }
                    latencies.add((System.nanoTime() - t0) / 1e6);
                }
                return new long[] {errors, mismatches};
            }));
        }
        long t0 = System.nanoTime();
        start.countDown();
        int errors = 0;
        int mismatches = 0;
        for (Future<long[]> f : futures) {
            long[] r = f.get(30, TimeUnit.MINUTES);
            errors += (int) r[0];
            mismatches += (int) r[1];
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        pool.shutdown();
        List<Double> sorted = new ArrayList<>(latencies);
        Collections.sort(sorted);
        int n = sorted.size();
        return new Report(clients, n, errors, mismatches + (clients * perClient - n), sorted.get((int) (0.5 * (n - 1))),
                sorted.get((int) Math.ceil(0.99 * (n - 1))), sorted.get(n - 1), seconds);
    }

    /**
     * The bigger load test: {@code ServeLoad [CLIENTS] [REQUESTS_PER_CLIENT]} (default 16 x 100) against
     * {@code peft4j serve} on the tiny Llama fixture with adapters a and b.
     *
     * @param args clients and requests per client
     * @throws Exception if the server cannot start
     */
    public static void main(String[] args) throws Exception {
        int clients = args.length > 0 ? Integer.parseInt(args[0]) : 16;
        int per = args.length > 1 ? Integer.parseInt(args[1]) : 100;
        try (Serve s = new Serve("--max-sessions", String.valueOf(Math.max(64, clients * 2)))) {
            Report r = run(s.uri, clients, per, 7);
            System.out.println("serve load: " + r);
            System.exit(r.errors() == 0 && r.mismatches() == 0 ? 0 : 1);
        }
    }
}
