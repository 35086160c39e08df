package io.github.peft4j.generate.serve;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.TransformerLm;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftModel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A causal language model served over HTTP as JSON (the JDK's {@code com.sun.net.httpserver}): decode sessions
 * (start, next, close), whole-sequence logits, generation, and a health check. The endpoints:
 * <ul>
 *   <li>{@code GET /}: {@code {"status": "ok", "vocab_size": V, "eos_token_ids": [...], "pad_token_id": p,
 *       "bos_token_id": b, "adapters": [...], ...}};
 *   <li>{@code POST /sessions} {@code {"input_ids": [[...]], "attention_mask": [[...]], "row_adapters": [...],
 *       "use_cache": true}} (mask, row adapters and use_cache optional): opens a session over the LEFT-padded batch,
 *       answers {@code {"session": ID, "shape": [B, V], "logits": [[...]]}};
 *   <li>{@code POST /sessions/ID/next} {@code {"tokens": [...]}} (one per row): {@code {"shape": [B, V], "logits": ...}};
 *   <li>{@code DELETE /sessions/ID} or {@code POST /sessions/ID/close}: {@code {"closed": ID}};
 *   <li>{@code POST /logits} {@code {"input_ids", "attention_mask", "row_adapters"}}: the whole sequence's logits
 *       {@code [B, S, V]} (needs the server to be made from a {@link PeftModel});
 *   <li>{@code POST /generate} {@code {"input_ids", "attention_mask", "row_adapters", "max_new_tokens", "do_sample",
 *       "temperature", "top_k", "top_p", "seed", "repetition_penalty", "stop_token_ids", "use_cache"}}:
 *       {@code {"generated_ids": [[...]], "lengths": [...], "stopped": [...]}} as {@link Generator} returns them.
 * </ul>
 * Logits are fp32, written in their shortest round-trip form (a client reading them as floats gets the very bits).
 * {@code row_adapters} names one adapter per row ({@link CallContext#BASE} for the base model): one base, many
 * tenants in one batch.
 *
 * <p>Errors answer a one-line {@code {"error": "..."}}: 400 malformed JSON, unknown fields, bad shapes, tokens
 * outside the vocabulary, unknown adapters; 404 an unknown (closed, timed-out) session or endpoint; 405 a wrong
 * method; 413 a body over {@link Options#maxBodyBytes()}; 429 a full session table; 500 anything else. No request
 * stops the server.
 *
 * <p>Concurrency: requests are handled by a bounded pool of threads, but one model is not safe for concurrent
 * forward calls (its layers and adapter state are shared), so every forward call (a session's start or next, a
 * whole-sequence forward, each step of a generation) runs under one lock; JSON parsing and writing happen outside
 * it. A generation takes the lock per step, so other clients' calls interleave with it. Sessions are bounded:
 * at most {@link Options#maxSessions()} open, and one idle for longer than {@link Options#idleTimeout()} is closed
 * (its key/value cache freed).
 */
public final class LogitsServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(LogitsServer.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final String ENDPOINTS = "GET /, POST /sessions, POST /sessions/ID/next, DELETE /sessions/ID,"
            + " POST /sessions/ID/close, POST /logits, POST /generate";
    private static final Set<String> START_FIELDS = Set.of("input_ids", "attention_mask", "row_adapters", "use_cache");
    private static final Set<String> NEXT_FIELDS = Set.of("tokens");
    private static final Set<String> LOGITS_FIELDS = Set.of("input_ids", "attention_mask", "row_adapters");
    private static final Set<String> GENERATE_FIELDS = Set.of("input_ids", "attention_mask", "row_adapters",
            "max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "seed", "repetition_penalty",
            "stop_token_ids", "use_cache");

    /**
     * The server's settings.
     *
     * @param host the address to bind (a loopback address unless the model should be reachable from elsewhere)
     * @param port the port, 0 for any free one
     * @param maxSessions the most sessions open at once (a start beyond it answers 429)
     * @param idleTimeout a session unused this long is closed
     * @param maxBodyBytes the largest request body accepted (larger ones answer 413)
     * @param threads the request threads (the forward calls still run one at a time)
     * @param maxNewTokens the largest {@code max_new_tokens} a generation request may ask for
     */
    public record Options(String host, int port, int maxSessions, Duration idleTimeout, int maxBodyBytes, int threads,
            int maxNewTokens) {
        /** Checks the values. */
        public Options {
            Objects.requireNonNull(host, "host");
            Objects.requireNonNull(idleTimeout, "idleTimeout");
            if (port < 0 || port > 65535) {
                throw new PeftException("serve: port " + port + " is outside [0, 65535]");
            }
            if (maxSessions < 1 || maxBodyBytes < 1 || threads < 1 || maxNewTokens < 1) {
                throw new PeftException("serve: maxSessions, maxBodyBytes, threads and maxNewTokens must be >= 1, got "
                        + maxSessions + ", " + maxBodyBytes + ", " + threads + ", " + maxNewTokens);
            }
            if (idleTimeout.isNegative() || idleTimeout.isZero()) {
                throw new PeftException("serve: the idle timeout must be positive, got " + idleTimeout);
            }
        }

        /** @return 127.0.0.1, any free port, 64 sessions, 5 minutes idle, 1 MiB bodies, 4 threads, 1024 new tokens */
        public static Options defaults() {
            return new Options("127.0.0.1", 0, 64, Duration.ofMinutes(5), 1 << 20, 4, 1024);
        }

        /** @param h the host @return a copy with it */
        public Options withHost(String h) {
            return new Options(h, port, maxSessions, idleTimeout, maxBodyBytes, threads, maxNewTokens);
        }

        /** @param p the port @return a copy with it */
        public Options withPort(int p) {
            return new Options(host, p, maxSessions, idleTimeout, maxBodyBytes, threads, maxNewTokens);
        }

        /** @param n the most open sessions @return a copy with it */
        public Options withMaxSessions(int n) {
            return new Options(host, port, n, idleTimeout, maxBodyBytes, threads, maxNewTokens);
        }

        /** @param d the idle timeout @return a copy with it */
        public Options withIdleTimeout(Duration d) {
            return new Options(host, port, maxSessions, d, maxBodyBytes, threads, maxNewTokens);
        }

        /** @param n the largest body in bytes @return a copy with it */
        public Options withMaxBodyBytes(int n) {
            return new Options(host, port, maxSessions, idleTimeout, n, threads, maxNewTokens);
        }

        /** @param n the request threads @return a copy with it */
        public Options withThreads(int n) {
            return new Options(host, port, maxSessions, idleTimeout, maxBodyBytes, n, maxNewTokens);
        }

        /** @param n the largest max_new_tokens @return a copy with it */
        public Options withMaxNewTokens(int n) {
            return new Options(host, port, maxSessions, idleTimeout, maxBodyBytes, threads, n);
        }
    }

    /** An answer other than 200: its status and message. */
    private static final class HttpError extends RuntimeException {
        private static final long serialVersionUID = 1L;
        final int status;

        HttpError(int status, String message) {
            super(message, null, false, false);
            this.status = status;
        }
    }

    /** One open session; its methods run one at a time, and a closed one answers 404. */
    private final class Entry {
        final String id;
        final DecodeSession session;
        volatile long lastUsed = System.nanoTime();
        private boolean closed;

        Entry(String id, DecodeSession session) {
            this.id = id;
            this.session = session;
        }

        synchronized float[] next(long[] tokens) {
            if (closed) {
                throw unknownSession(id);
            }
            lastUsed = System.nanoTime();
            try (NDScope scope = new NDScope()) {
                return session.next(tokens).toFloatArray();
            } finally {
                lastUsed = System.nanoTime();
            }
        }

        /** Closes once; true the first time. */
        synchronized boolean close() {
            if (closed) {
                return false;
            }
            closed = true;
            session.close();
            return true;
        }

        synchronized boolean closeIfIdle(long now, long idleNanos) {
            return !closed && now - lastUsed > idleNanos && close();
        }
    }

    static {
        // The JDK server writes a response's headers and body separately; with Nagle's algorithm on, the body waits
        // for the client's delayed ACK (about 40 ms on Linux loopback) on every call. Read once, when the JDK's
        // server configuration first loads; an explicit setting is left alone.
        if (System.getProperty("sun.net.httpserver.nodelay") == null) {
            System.setProperty("sun.net.httpserver.nodelay", "true");
        }
    }

    private final LanguageModel lm;
    private final PeftModel peft;
    private final Options options;
    private final ReentrantLock forwardLock = new ReentrantLock(true);
    private final Map<String, Entry> sessions = new ConcurrentHashMap<>();
    private final AtomicInteger reserved = new AtomicInteger();
    private final HttpServer http;
    private final ThreadPoolExecutor pool;
    private final ScheduledExecutorService sweeper;
    private final CountDownLatch stopped = new CountDownLatch(1);

    private LogitsServer(LanguageModel lm, PeftModel peft, Options options) throws IOException {
        this.lm = new Serialised(Objects.requireNonNull(lm, "language model"));
        this.peft = peft;
        this.options = Objects.requireNonNull(options, "options");
        this.http = HttpServer.create(new InetSocketAddress(options.host(), options.port()), 64);
        AtomicInteger n = new AtomicInteger();
        this.pool = new ThreadPoolExecutor(options.threads(), options.threads(), 30, TimeUnit.SECONDS,
                new ArrayBlockingQueue<>(256), r -> daemon(r, "peft4j-serve-" + n.incrementAndGet()),
                new ThreadPoolExecutor.CallerRunsPolicy()); // a full queue slows the accepting thread down
        http.setExecutor(pool);
        http.createContext("/", this::handle);
        this.sweeper = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "peft4j-serve-sweeper"));
        long period = Math.max(50, Math.min(10_000, options.idleTimeout().toMillis() / 4));
        sweeper.scheduleWithFixedDelay(this::sweep, period, period, TimeUnit.MILLISECONDS);
        http.start();
    }

    private static Thread daemon(Runnable r, String name) {
        Thread t = new Thread(r, name);
        t.setDaemon(true);
        return t;
    }

    /**
     * Serves a model with adapters: sessions, generation and whole-sequence logits, every forward through
     * {@link PeftModel#forward} (its active adapters apply, and a request's row adapters pick one per row).
     *
     * @param peft the model (a causal language model)
     * @param options the settings
     * @return the running server
     * @throws PeftException if the model is not a causal language model or the address cannot be bound
     */
    public static LogitsServer start(PeftModel peft, Options options) {
        return start(TransformerLm.of(peft), Objects.requireNonNull(peft, "peft"), options);
    }

    /**
     * Serves any language model (a combination of models, say): sessions and generation; {@code POST /logits}
     * answers 404, since a {@link LanguageModel} only gives next-token logits.
     *
     * @param lm the model
     * @param options the settings
     * @return the running server
     * @throws PeftException if the address cannot be bound
     */
    public static LogitsServer start(LanguageModel lm, Options options) {
        return start(lm, null, options);
    }

    private static LogitsServer start(LanguageModel lm, PeftModel peft, Options options) {
        try {
            LogitsServer s = new LogitsServer(lm, peft, options);
            LOG.info("serving on {}", s.uri());
            return s;
        } catch (IOException e) {
            throw new PeftException("serve: cannot listen on " + options.host() + ":" + options.port() + ": " + e.getMessage(), e);
        }
    }

    /** @return the bound port (the chosen one when the options asked for 0) */
    public int port() {
        return http.getAddress().getPort();
    }

    /** @return {@code http://HOST:PORT/} of the bound address */
    public URI uri() {
        String host = http.getAddress().getAddress().getHostAddress();
        return URI.create("http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + port() + "/");
    }

    /** @return the settings */
    public Options options() {
        return options;
    }

    /** @return how many sessions are open now */
    public int openSessions() {
        return sessions.size();
    }

    /**
     * Blocks until {@link #close} is called (the {@code serve} command waits here).
     *
     * @throws InterruptedException if the waiting thread is interrupted
     */
    public void awaitClose() throws InterruptedException {
        stopped.await();
    }

    /** Stops listening (requests in progress get a second to finish) and closes every open session. */
    @Override
    public synchronized void close() {
        if (stopped.getCount() == 0) {
            return;
        }
        http.stop(1);
        sweeper.shutdownNow();
        pool.shutdown();
        try {
            pool.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Iterator<Entry> it = sessions.values().iterator(); it.hasNext(); ) {
            Entry e = it.next();
            it.remove();
            e.close();
        }
        stopped.countDown();
    }

    /** Closes the sessions idle for longer than the timeout. */
    private void sweep() {
        try {
            long now = System.nanoTime();
            long idle = options.idleTimeout().toNanos();
            for (Entry e : sessions.values()) {
                if (now - e.lastUsed > idle && e.closeIfIdle(now, idle)) {
                    sessions.remove(e.id, e);
                    reserved.decrementAndGet();
                    LOG.info("closed session {} after {} idle", e.id, options.idleTimeout());
                }
            }
        } catch (RuntimeException e) {
            LOG.warn("session sweep failed: {}", e.toString());
        }
    }

    // ---------------------------------------------------------------- requests

    private void handle(HttpExchange ex) {
        int status;
        byte[] body;
        try {
            body = route(ex);
            status = 200;
        } catch (HttpError e) {
            status = e.status;
            body = error(e.getMessage());
        } catch (PeftException | IllegalArgumentException e) { // the input does not fit the model
            status = 400;
            body = error(e.getMessage());
        } catch (RuntimeException | Error e) { // a bug or a resource problem: answered, logged, and the server goes on
            LOG.warn("{} {} failed", ex.getRequestMethod(), ex.getRequestURI(), e);
            status = 500;
            body = error("internal error: " + e);
        }
        try {
            ex.getResponseHeaders().set("Content-Type", "application/json");
            if (status == 413) {
                ex.getResponseHeaders().set("Connection", "close");
            }
            ex.sendResponseHeaders(status, body.length);
            try (OutputStream os = ex.getResponseBody()) {
                os.write(body);
            }
        } catch (IOException e) {
            LOG.debug("could not answer {} {}: {}", ex.getRequestMethod(), ex.getRequestURI(), e.toString());
        } finally {
            ex.close();
        }
    }

    private byte[] route(HttpExchange ex) {
        String method = ex.getRequestMethod();
        String path = ex.getRequestURI().getPath();
        if (path.length() > 1 && path.endsWith("/")) {
            path = path.substring(0, path.length() - 1);
        }
        String[] parts = path.split("/", -1); // "" first
        if (path.equals("/")) {
            allow(method, "GET");
            return health();
        }
        if (path.equals("/sessions")) {
            allow(method, "POST");
            return startSession(body(ex, START_FIELDS));
        }
        if (parts.length == 3 && parts[1].equals("sessions")) {
            allow(method, "DELETE");
            return closeSession(parts[2]);
        }
        if (parts.length == 4 && parts[1].equals("sessions") && parts[3].equals("next")) {
            allow(method, "POST");
            return nextToken(parts[2], body(ex, NEXT_FIELDS));
        }
        if (parts.length == 4 && parts[1].equals("sessions") && parts[3].equals("close")) {
            allow(method, "POST");
            return closeSession(parts[2]);
        }
        if (path.equals("/logits")) {
            allow(method, "POST");
            return logits(body(ex, LOGITS_FIELDS));
        }
        if (path.equals("/generate")) {
            allow(method, "POST");
            return generate(body(ex, GENERATE_FIELDS));
        }
        throw new HttpError(404, "no endpoint " + method + " " + path + "; the endpoints: " + ENDPOINTS);
    }

    private static void allow(String method, String allowed) {
        if (!method.equals(allowed)) {
            throw new HttpError(405, method + " is not allowed here; use " + allowed);
        }
    }

    private byte[] health() {
        ObjectNode o = JSON.createObjectNode();
        o.put("status", "ok");
        o.put("model", peft != null ? peft.model().architecture() : "language model");
        o.put("vocab_size", lm.vocabSize());
        o.set("eos_token_ids", JSON.valueToTree(lm.eosTokenIds()));
        o.put("pad_token_id", lm.padTokenId());
        o.put("bos_token_id", lm.bosTokenId());
        o.set("adapters", JSON.valueToTree(peft == null ? List.of() : new ArrayList<>(peft.adapterNames())));
        o.set("active_adapters", JSON.valueToTree(peft == null ? List.of() : peft.activeAdapters()));
        o.put("whole_sequence_logits", peft != null);
        o.put("open_sessions", sessions.size());
        o.put("max_sessions", options.maxSessions());
        o.put("idle_timeout_s", options.idleTimeout().toMillis() / 1000.0);
        o.put("max_body_bytes", options.maxBodyBytes());
        o.put("max_new_tokens", options.maxNewTokens());
        return bytes(o);
    }

    private byte[] startSession(JsonNode req) {
        long[][] ids = ids(req, "input_ids");
        long[][] mask = req.has("attention_mask") ? ids(req, "attention_mask") : null;
        long[][] checked = DecodeSession.checkBatch(ids, mask, lm.vocabSize());
        CallContext ctx = context(req, ids.length);
        boolean cache = bool(req, "use_cache", true);
        if (reserved.incrementAndGet() > options.maxSessions()) {
            reserved.decrementAndGet();
            throw new HttpError(429, "the session table is full (" + options.maxSessions() + " open); close one"
                    + " (DELETE /sessions/ID) or wait for the idle timeout (" + options.idleTimeout().toSeconds() + " s)");
        }
        DecodeSession s = null;
        try {
            s = lm.open(ctx, cache);
            float[] logits;
            try (NDScope scope = new NDScope()) {
                logits = s.start(ids, checked).toFloatArray();
            }
            String id = HexFormat.of().formatHex(randomBytes());
            sessions.put(id, new Entry(id, s));
            int v = lm.vocabSize();
            return write(g -> {
                g.writeStringField("session", id);
                Wire.writeLogits(g, logits, new long[] {logits.length / v, v});
            });
        } catch (RuntimeException | Error e) {
            reserved.decrementAndGet();
            if (s != null) {
                s.close();
            }
            throw e;
        }
    }

    private static byte[] randomBytes() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return b;
    }

    private byte[] nextToken(String id, JsonNode req) {
        Entry e = sessions.get(id);
        if (e == null) {
            throw unknownSession(id);
        }
        JsonNode t = req.get("tokens");
        if (t == null || !t.isArray()) {
            throw new HttpError(400, "tokens: expected an array of token ids, one per row, got " + kind(t));
        }
        long[] tokens = new long[t.size()];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = id(t.get(i), "tokens[" + i + "]");
        }
        float[] logits = e.next(tokens);
        int v = lm.vocabSize();
        return write(g -> Wire.writeLogits(g, logits, new long[] {logits.length / v, v}));
    }

    private byte[] closeSession(String id) {
        Entry e = sessions.remove(id);
        if (e == null) {
            throw unknownSession(id);
        }
        if (e.close()) {
            reserved.decrementAndGet();
        }
        ObjectNode o = JSON.createObjectNode();
        o.put("closed", id);
        return bytes(o);
    }

    private HttpError unknownSession(String id) {
        return new HttpError(404, "unknown session '" + id + "' (closed, idle for longer than "
                + options.idleTimeout().toSeconds() + " s, or never opened)");
    }

    private byte[] logits(JsonNode req) {
        if (peft == null) {
            throw new HttpError(404, "POST /logits: this server serves a language model without whole-sequence logits"
                    + " (start it from a PeftModel)");
        }
        long[][] ids = ids(req, "input_ids");
        long[][] mask = req.has("attention_mask") ? ids(req, "attention_mask") : null;
        checkRect(ids, mask, lm.vocabSize());
        CallContext ctx = context(req, ids.length);
        float[] data;
        long[] shape;
        forwardLock.lock();
        boolean grad = JniUtils.isGradMode();
        JniUtils.setGradMode(false);
        try (NDScope scope = new NDScope()) {
            NDManager m = peft.model().manager();
            NDArray in = Ops.owned(m, flat(ids), new Shape(ids.length, ids[0].length));
            NDArray am = mask == null ? null : Ops.owned(m, flat(mask), new Shape(ids.length, ids[0].length));
            ModelOutput o = peft.forward(new ModelInput(in, null, am, null, null, null, false).withContext(ctx));
            NDArray l = o.logits();
            shape = l.getShape().getShape();
            data = (l.getDataType() == DataType.FLOAT32 ? l : l.toType(DataType.FLOAT32, false)).toFloatArray();
        } finally {
            JniUtils.setGradMode(grad);
            forwardLock.unlock();
        }
        return write(g -> Wire.writeLogits(g, data, shape));
    }

    private byte[] generate(JsonNode req) {
        long[][] ids = ids(req, "input_ids");
        long[][] mask = req.has("attention_mask") ? ids(req, "attention_mask") : null;
        CallContext ctx = context(req, ids.length);
        int n = (int) integer(req, "max_new_tokens", 20, 1, options.maxNewTokens());
        GenerationConfig.Builder b = GenerationConfig.builder().maxNewTokens(n).doSample(bool(req, "do_sample", false))
                .useCache(bool(req, "use_cache", true));
        if (req.has("temperature")) {
            b.temperature(number(req, "temperature"));
        }
        if (req.has("top_k")) {
            b.topK((int) integer(req, "top_k", 0, 0, Integer.MAX_VALUE));
        }
        if (req.has("top_p")) {
            b.topP(number(req, "top_p"));
        }
        if (req.has("seed")) {
            b.seed(integer(req, "seed", 0, Long.MIN_VALUE, Long.MAX_VALUE));
        }
        if (req.has("repetition_penalty")) {
            b.repetitionPenalty(number(req, "repetition_penalty"));
        }
        if (req.has("stop_token_ids")) {
            JsonNode s = req.get("stop_token_ids");
            if (!s.isArray()) {
                throw new HttpError(400, "stop_token_ids: expected an array of token ids, got " + kind(s));
            }
            int[] stops = new int[s.size()];
            for (int i = 0; i < stops.length; i++) {
                stops[i] = (int) id(s.get(i), "stop_token_ids[" + i + "]");
            }
            b.stopTokenIds(stops);
        }
        GenerationResult r = Generator.of(lm).generate(ids, mask, b.build(), ctx);
        ObjectNode o = JSON.createObjectNode();
        o.set("generated_ids", JSON.valueToTree(r.tokens()));
        o.set("lengths", JSON.valueToTree(r.lengths()));
        o.set("stopped", JSON.valueToTree(r.stopped()));
        return bytes(o);
    }

    // ---------------------------------------------------------------- parsing

    /** Reads the body (at most the limit), parses it as one JSON object with only the given fields. */
    private JsonNode body(HttpExchange ex, Set<String> fields) {
        String declared = ex.getRequestHeaders().getFirst("Content-Length");
        if (declared != null) {
            long len;
            try {
                len = Long.parseLong(declared.trim());
            } catch (NumberFormatException e) {
                throw new HttpError(400, "Content-Length '" + declared + "' is not a number");
            }
            if (len > options.maxBodyBytes()) {
                throw new HttpError(413, "the request body has " + len + " bytes, more than the limit of "
                        + options.maxBodyBytes());
            }
        }
        byte[] raw;
        try (InputStream in = ex.getRequestBody()) {
            raw = in.readNBytes(options.maxBodyBytes() + 1);
        } catch (IOException e) {
            throw new UncheckedIOException("reading the request body: " + e.getMessage(), e);
        }
        if (raw.length > options.maxBodyBytes()) {
            throw new HttpError(413, "the request body is larger than the limit of " + options.maxBodyBytes() + " bytes");
        }
        JsonNode node;
        try {
            node = JSON.readTree(raw);
        } catch (JsonProcessingException e) {
            throw new HttpError(400, "malformed JSON: " + e.getOriginalMessage().lines().findFirst().orElse("")
                    + " (line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")");
        } catch (IOException e) {
            throw new HttpError(400, "malformed JSON: " + e.getMessage().lines().findFirst().orElse(""));
        }
        if (node == null || node.isMissingNode() || !node.isObject()) {
            throw new HttpError(400, "the request body must be a JSON object, got " + kind(node));
        }
        for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
            String f = it.next();
            if (!fields.contains(f)) {
                throw new HttpError(400, "unknown field '" + f + "'; expected some of " + new java.util.TreeSet<>(fields));
            }
        }
        return node;
    }

    private static String kind(JsonNode n) {
        return n == null || n.isMissingNode() ? "nothing" : n.getNodeType().toString().toLowerCase(java.util.Locale.ROOT);
    }

    /** A {@code [B][L]} array of integers (rows may differ here; the model's checks name a ragged row). */
    private static long[][] ids(JsonNode req, String field) {
        JsonNode a = req.get(field);
        if (a == null || !a.isArray() || a.isEmpty()) {
            throw new HttpError(400, field + ": expected a non-empty array of rows of token ids, got " + kind(a));
        }
        long[][] out = new long[a.size()][];
        for (int r = 0; r < out.length; r++) {
            JsonNode row = a.get(r);
            if (!row.isArray()) {
                throw new HttpError(400, field + "[" + r + "]: expected an array of integers, got " + kind(row));
            }
            out[r] = new long[row.size()];
            for (int j = 0; j < out[r].length; j++) {
                out[r][j] = id(row.get(j), field + "[" + r + "][" + j + "]");
            }
        }
        return out;
    }

    private static long id(JsonNode v, String where) {
        if (v == null || !v.isIntegralNumber() || !v.canConvertToLong()) {
            throw new HttpError(400, where + ": expected an integer, got " + (v == null ? "nothing" : v.toString()));
        }
        return v.asLong();
    }

    private static void checkRect(long[][] ids, long[][] mask, int vocab) {
        int len = ids[0].length;
        if (len == 0) {
            throw new HttpError(400, "input_ids: rows must not be empty");
        }
        if (mask != null && mask.length != ids.length) {
            throw new HttpError(400, "attention_mask has " + mask.length + " rows, input_ids " + ids.length);
        }
        for (int r = 0; r < ids.length; r++) {
            if (ids[r].length != len || mask != null && mask[r].length != len) {
                throw new HttpError(400, "row " + r + " of input_ids / attention_mask has a different length than row 0 (" + len + ")");
            }
            for (int j = 0; j < len; j++) {
                if (ids[r][j] < 0 || ids[r][j] >= vocab) {
                    throw new HttpError(400, "input_ids[" + r + "][" + j + "] = " + ids[r][j] + " is outside the vocabulary [0, " + vocab + ")");
                }
                if (mask != null && mask[r][j] != 0 && mask[r][j] != 1) {
                    throw new HttpError(400, "attention_mask[" + r + "][" + j + "] = " + mask[r][j] + ", expected 0 or 1");
                }
            }
        }
    }

    private CallContext context(JsonNode req, int rows) {
        JsonNode a = req.get("row_adapters");
        if (a == null || a.isNull()) {
            return CallContext.NONE;
        }
        if (!a.isArray()) {
            throw new HttpError(400, "row_adapters: expected an array of adapter names, got " + kind(a));
        }
        List<String> names = new ArrayList<>();
        for (int i = 0; i < a.size(); i++) {
            if (!a.get(i).isTextual()) {
                throw new HttpError(400, "row_adapters[" + i + "]: expected an adapter name, got " + a.get(i));
            }
            names.add(a.get(i).asText());
        }
        if (names.size() != rows) {
            throw new HttpError(400, "row_adapters names " + names.size() + " adapters for " + rows + " rows");
        }
        if (peft == null) {
            throw new HttpError(400, "row_adapters: this server's model has no adapters to choose from");
        }
        for (String s : names) {
            if (!s.equals(CallContext.BASE) && !peft.adapterNames().contains(s)) {
                throw new HttpError(400, "row_adapters: '" + s + "' is not a loaded adapter; expected one of "
                        + peft.adapterNames() + " or " + CallContext.BASE);
            }
        }
        return CallContext.rowAdapters(names);
    }

    private static boolean bool(JsonNode req, String field, boolean dflt) {
        JsonNode v = req.get(field);
        if (v == null) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw new HttpError(400, field + ": expected true or false, got " + v);
        }
        return v.asBoolean();
    }

    private static long integer(JsonNode req, String field, long dflt, long min, long max) {
        JsonNode v = req.get(field);
        if (v == null) {
            return dflt;
        }
        long x = id(v, field);
        if (x < min || x > max) {
            throw new HttpError(400, field + ": " + x + " is outside [" + min + ", " + max + "]");
        }
        return x;
    }

    private static double number(JsonNode req, String field) {
        JsonNode v = req.get(field);
        if (!v.isNumber()) {
            throw new HttpError(400, field + ": expected a number, got " + v);
        }
        return v.asDouble();
    }

    private static long[] flat(long[][] rows) {
        int w = rows[0].length;
        long[] out = new long[rows.length * w];
        for (int r = 0; r < rows.length; r++) {
            System.arraycopy(rows[r], 0, out, r * w, w);
        }
        return out;
    }

    // ---------------------------------------------------------------- writing

    private interface Body {
        void write(JsonGenerator g) throws IOException;
    }

    /** One JSON object whose fields the body writes. */
    private static byte[] write(Body body) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.getFactory().createGenerator(out, JsonEncoding.UTF8)) {
            g.writeStartObject();
            body.write(g);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private static byte[] bytes(JsonNode n) {
        try {
            return JSON.writeValueAsBytes(n);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static byte[] error(String message) {
        ObjectNode o = JSON.createObjectNode();
        o.put("error", message == null ? "error" : message.replace('\n', ' '));
        return bytes(o);
    }

    // ---------------------------------------------------------------- one forward at a time

    /** The served model with every session call under the forward lock. */
    private final class Serialised implements LanguageModel {
        private final LanguageModel inner;

        Serialised(LanguageModel inner) {
            this.inner = inner;
        }

        @Override
        public int vocabSize() {
            return inner.vocabSize();
        }

        @Override
        public int[] eosTokenIds() {
            return inner.eosTokenIds();
        }

        @Override
        public int padTokenId() {
            return inner.padTokenId();
        }

        @Override
        public int bosTokenId() {
            return inner.bosTokenId();
        }

        @Override
        public DecodeSession open(CallContext context, boolean useCache) {
            DecodeSession s;
            forwardLock.lock();
            try {
                s = inner.open(context, useCache);
            } finally {
                forwardLock.unlock();
            }
            return new DecodeSession() {
                @Override
                public NDArray start(long[][] inputIds, long[][] attentionMask) {
                    forwardLock.lock();
                    try {
                        return s.start(inputIds, attentionMask);
                    } finally {
                        forwardLock.unlock();
                    }
                }

                @Override
                public NDArray next(long[] tokens) {
                    forwardLock.lock();
                    try {
                        return s.next(tokens);
                    } finally {
                        forwardLock.unlock();
                    }
                }

                @Override
                public void close() {
                    forwardLock.lock();
                    try {
                        s.close();
                    } finally {
                        forwardLock.unlock();
                    }
                }
            };
        }
    }
}
