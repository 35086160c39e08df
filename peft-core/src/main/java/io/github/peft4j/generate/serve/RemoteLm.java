package io.github.peft4j.generate.serve;

import ai.djl.Device;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.model.CallContext;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * A causal language model behind a {@link LogitsServer}, as a {@link LanguageModel}: every session is a session
 * on the server (its key/value cache lives there), and only token ids and logits cross the wire (HTTP/1.1 JSON
 * over {@link HttpClient}). {@code Generator.of(remote)} decodes it, and proxy-tuning takes it as its base model M
 * ({@code ProxyTuningLm.of(remote, expert, antiExpert, alpha)}): M's weights never have to be at hand.
 *
 * <p>The logits a session returns are {@code [B, V]} fp32 arrays on the CPU, made by this object's manager and
 * registered in the caller's innermost {@code NDScope} if one is open (without one the caller closes them, or
 * {@link #close} frees them all). A session's row adapters ({@link CallContext#rowAdapters()}) are sent to the
 * server, which picks the adapter of each row. A server error becomes a {@link PeftException} with the server's
 * status and message.
 */
public final class RemoteLm implements LanguageModel, AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final URI uri;
    private final HttpClient client;
    private final Duration timeout;
    private final NDManager manager;
    private final JsonNode health;

    private RemoteLm(URI uri, Duration timeout) {
        String s = uri.toString();
        this.uri = URI.create(s.endsWith("/") ? s : s + "/");
        if (!"http".equals(this.uri.getScheme()) || this.uri.getHost() == null) {
            throw new PeftException("remote model: '" + uri + "' is not an http://HOST:PORT address");
        }
        this.timeout = timeout;
        this.client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(timeout).build();
        this.health = parse(send(HttpRequest.newBuilder(this.uri).GET(), "GET /"), "GET /");
        if (!health.path("vocab_size").canConvertToInt() || health.path("vocab_size").asInt() < 1) {
            throw new PeftException("remote model " + this.uri + ": GET / gives no vocab_size; is it a peft4j serve?");
        }
        this.manager = NDManager.newBaseManager(Device.cpu());
    }

    /**
     * Connects to a server (reads its health check for the vocabulary and special ids), with 60 s timeouts.
     *
     * @param uri {@code http://HOST:PORT} (a trailing slash is optional)
     * @return the remote model
     * @throws PeftException if the server cannot be reached or does not answer as a {@link LogitsServer}
     */
    public static RemoteLm connect(URI uri) {
        return connect(uri, Duration.ofSeconds(60));
    }

    /**
     * @param uri {@code http://HOST:PORT}
     * @param timeout the connect timeout and the longest wait for one answer
     * @return the remote model
     * @throws PeftException if the server cannot be reached or does not answer as a {@link LogitsServer}
     */
    public static RemoteLm connect(URI uri, Duration timeout) {
        return new RemoteLm(Objects.requireNonNull(uri, "uri"), Objects.requireNonNull(timeout, "timeout"));
    }

    /** @return the server's address */
    public URI uri() {
        return uri;
    }

    /** @return the adapters loaded on the server (names a request's row adapters may use) */
    public List<String> adapters() {
        List<String> out = new ArrayList<>();
        health.path("adapters").forEach(n -> out.add(n.asText()));
        return out;
    }

    /** @return the server's health check as it answered on connecting */
    public JsonNode health() {
        return health.deepCopy();
    }

    @Override
    public int vocabSize() {
        return health.get("vocab_size").asInt();
    }

    @Override
    public int[] eosTokenIds() {
        JsonNode e = health.path("eos_token_ids");
        int[] out = new int[e.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = e.get(i).asInt();
        }
        return out;
    }

    @Override
    public int padTokenId() {
        return health.path("pad_token_id").asInt(-1);
    }

    @Override
    public int bosTokenId() {
        return health.path("bos_token_id").asInt(-1);
    }

    @Override
    public DecodeSession open(CallContext context, boolean useCache) {
        return new Session(context == null ? CallContext.NONE : context, useCache);
    }

    /**
     * The logits of every position ({@code POST /logits}), as {@code PeftModel.forward} gives them on the server.
     *
     * @param inputIds {@code [B][L]} token ids
     * @param attentionMask {@code [B][L]} 0/1, or null
     * @param context row adapters, or {@link CallContext#NONE}
     * @return {@code [B, L, V]} fp32 logits (more positions with prompt tuning), made as the sessions' logits are
     */
    public NDArray logits(long[][] inputIds, long[][] attentionMask, CallContext context) {
        byte[] body = request(g -> {
            ids(g, "input_ids", inputIds);
            if (attentionMask != null) {
                ids(g, "attention_mask", attentionMask);
            }
            rows(g, context);
        });
        return logitsOf(post("logits", body), "POST /logits", null);
    }

    /** Frees every array this model has returned. */
    @Override
    public void close() {
        manager.close();
    }

    @Override
    public String toString() {
        return "RemoteLm(" + uri + ")";
    }

    /** A session on the server: start opens it there, next appends, close deletes it. */
    private final class Session implements DecodeSession {
        private final CallContext context;
        private final boolean useCache;
        private String id;
        private boolean closed;

        Session(CallContext context, boolean useCache) {
            this.context = context;
            this.useCache = useCache;
        }

        @Override
        public NDArray start(long[][] inputIds, long[][] attentionMask) {
            check();
            long[][] mask = DecodeSession.checkBatch(inputIds, attentionMask, vocabSize());
            release();
            byte[] body = request(g -> {
                ids(g, "input_ids", inputIds);
                ids(g, "attention_mask", mask);
                rows(g, context);
                g.writeBooleanField("use_cache", useCache);
            });
            String[] sid = new String[1];
            NDArray out = logitsOf(post("sessions", body), "POST /sessions", sid);
            if (sid[0] == null) {
                out.close();
                throw new PeftException("remote model " + uri + ": POST /sessions answered no session id");
            }
            id = sid[0];
            return out;
        }

        @Override
        public NDArray next(long[] tokens) {
            check();
            if (id == null) {
                throw new PeftException("decode: next() before start()");
            }
            byte[] body = request(g -> {
                g.writeArrayFieldStart("tokens");
                for (long t : tokens) {
                    g.writeNumber(t);
                }
                g.writeEndArray();
            });
            return logitsOf(post("sessions/" + id + "/next", body), "POST /sessions/" + id + "/next", null);
        }

        private void check() {
            if (closed) {
                throw new PeftException("decode: the session is closed");
            }
        }

        /** Deletes the server's session, if any; one the server already dropped (timed out) is gone anyway. */
        private void release() {
            if (id != null) {
                String s = id;
                id = null;
                HttpResponse<byte[]> r = send(HttpRequest.newBuilder(uri.resolve("sessions/" + s)).DELETE(), null);
                if (r.statusCode() != 200 && r.statusCode() != 404) {
                    throw failure(r, "DELETE /sessions/" + s);
                }
            }
        }

        @Override
        public void close() {
            if (!closed) {
                closed = true;
                release();
            }
        }
    }

    // ---------------------------------------------------------------- wire

    private interface Fields {
        void write(JsonGenerator g) throws IOException;
    }

    private static byte[] request(Fields fields) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.getFactory().createGenerator(out, JsonEncoding.UTF8)) {
            g.writeStartObject();
            fields.write(g);
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private static void ids(JsonGenerator g, String field, long[][] rows) throws IOException {
        g.writeArrayFieldStart(field);
        for (long[] row : rows) {
            g.writeArray(row, 0, row.length);
        }
        g.writeEndArray();
    }

    private static void rows(JsonGenerator g, CallContext context) throws IOException {
        if (context != null && context.rowAdapters() != null) {
            g.writeArrayFieldStart("row_adapters");
            for (String s : context.rowAdapters()) {
                g.writeString(s);
            }
            g.writeEndArray();
        }
    }

    private HttpResponse<byte[]> post(String path, byte[] body) {
        HttpResponse<byte[]> r = send(HttpRequest.newBuilder(uri.resolve(path)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofByteArray(body)), null);
        if (r.statusCode() != 200) {
            throw failure(r, "POST /" + path);
        }
        return r;
    }

    /** Sends; with a {@code what}, a non-200 answer is an error. */
    private HttpResponse<byte[]> send(HttpRequest.Builder b, String what) {
        HttpResponse<byte[]> r;
        try {
            r = client.send(b.timeout(timeout).build(), HttpResponse.BodyHandlers.ofByteArray());
        } catch (IOException e) {
            throw new PeftException("remote model " + uri + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new PeftException("remote model " + uri + ": interrupted", e);
        }
        if (what != null && r.statusCode() != 200) {
            throw failure(r, what);
        }
        return r;
    }

    private PeftException failure(HttpResponse<byte[]> r, String what) {
        String msg;
        try {
            msg = JSON.readTree(r.body()).path("error").asText(new String(r.body(), java.nio.charset.StandardCharsets.UTF_8));
        } catch (IOException e) {
            msg = new String(r.body(), java.nio.charset.StandardCharsets.UTF_8);
        }
        return new PeftException("remote model " + uri + ": " + what + " answered " + r.statusCode() + ": " + msg);
    }

    private JsonNode parse(HttpResponse<byte[]> r, String what) {
        try {
            return JSON.readTree(r.body());
        } catch (IOException e) {
            throw new PeftException("remote model " + uri + ": " + what + " answered no JSON: " + e.getMessage(), e);
        }
    }

    /** Reads {@code {"session"?, "shape", "logits"}} into an array; the session id into {@code sid[0]} if asked. */
    private NDArray logitsOf(HttpResponse<byte[]> r, String what, String[] sid) {
        String where = "remote model " + uri + ": " + what;
        long[] shape = null;
        float[] data = null;
        try (JsonParser p = JSON.getFactory().createParser(r.body())) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new PeftException(where + " answered no JSON object");
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String f = p.getCurrentName();
                p.nextToken();
                if (f.equals("shape")) {
                    shape = JSON.readValue(p, long[].class);
                } else if (f.equals("logits")) {
                    if (shape == null) {
                        throw new PeftException(where + ": the logits come before their shape");
                    }
                    data = Wire.readNested(p, shape, where);
                } else if (f.equals("session") && sid != null) {
                    sid[0] = p.getText();
                } else {
                    p.skipChildren();
                }
            }
        } catch (IOException e) {
            throw new PeftException(where + " answered malformed JSON: " + e.getMessage(), e);
        }
        if (data == null) {
            throw new PeftException(where + " answered no logits");
        }
        return manager.create(data, new Shape(shape)); // registered in the caller's scope, if one is open
    }
}
