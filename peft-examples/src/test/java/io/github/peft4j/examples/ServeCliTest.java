package io.github.peft4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.testing.Fixtures;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code peft4j serve} run as a command (in a thread of this JVM, on a free loopback port) and
 * {@code generate --model http://HOST:PORT} against it: the ids equal those of {@code generate --model DIR}, with
 * row adapters, with a text prompt and {@code --tokenizer}, and with proxy-tuning (the transformers reference).
 */
class ServeCliTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern SERVING = Pattern.compile("serving LlamaForCausalLM \\(vocab 128, adapters \\[a, b]\\) on (http://127\\.0\\.0\\.1:\\d+/)");

    private static Thread serve;
    private static volatile String url;
    private static volatile int status = -1;

    @TempDir
    Path tmp;

    private static String mixed(String rel) {
        return Fixtures.dir("llama_mixed_batch").resolve(rel).toString();
    }

    private static String base() {
        return Fixtures.dir("llama_lora").resolve("base").toString();
    }

    @BeforeAll
    static void startServe() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream ps = new PrintStream(out, true, StandardCharsets.UTF_8);
        serve = new Thread(() -> status = Peft4jCli.run(new String[] {"serve", "--model", base(), "--adapter", "a=" + mixed("a"),
            "--adapter", "b=" + mixed("b"), "--port", "0", "--max-sessions", "8"}, ps, ps), "serve-cli-test");
        serve.setDaemon(true);
        serve.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (url == null && System.nanoTime() < deadline && serve.isAlive()) {
            Matcher m = SERVING.matcher(out.toString(StandardCharsets.UTF_8));
            if (m.find()) {
                url = m.group(1);
            } else {
                Thread.sleep(50);
            }
        }
        assertTrue(url != null, "serve printed: " + out.toString(StandardCharsets.UTF_8));
    }

    @AfterAll
    static void stopServe() throws Exception {
        serve.interrupt();
        serve.join(30_000);
        assertEquals(0, status, "serve returns 0 when stopped");
    }

    private static JsonNode ids(Path file) throws Exception {
        return JSON.readTree(file.toFile()).get("generated_ids");
    }

    @Test
    void generateAgainstTheServerEqualsGenerateInProcess() throws Exception {
        HttpResponse<String> h = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(url)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        assertEquals(200, h.statusCode());
        assertEquals(128, JSON.readTree(h.body()).get("vocab_size").asInt());
        String in = mixed("input_ids.json");
        for (String rows : new String[] {null, "b,__base__", "a,b"}) {
            Path local = tmp.resolve("local.json");
            Path remote = tmp.resolve("remote.json");
            String[] r = rows == null ? new String[0] : new String[] {"--row-adapters", rows};
            CliResult l = CliResult.run(concat(new String[] {"generate", "--model", base(), "--adapter", "a=" + mixed("a"),
                "--adapter", "b=" + mixed("b"), "--input", in, "--max-new-tokens", "8", "--output", local.toString()}, r));
            assertEquals(0, l.status(), l.err());
            CliResult s = CliResult.run(concat(new String[] {"generate", "--model", url, "--input", in, "--max-new-tokens", "8",
                "--output", remote.toString()}, r));
            assertEquals(0, s.status(), s.err());
            assertEquals(ids(local), ids(remote), "rows " + rows);
            System.out.println("generate --model " + url + " rows " + rows + ": " + ids(remote) + " = --model DIR");
        }
    }

    @Test
    void proxyTuningWithTheBaseBehindServe() throws Exception {
        JsonNode ref = Fixtures.json("llama_proxy_tuning", "proxy.json");
        Path in = tmp.resolve("in.json");
        Files.writeString(in, "{\"input_ids\": " + ref.get("input_ids") + ", \"attention_mask\": " + ref.get("attention_mask") + "}");
        String small = Fixtures.dir("llama_proxy_tuning").resolve("small").toString();
        for (String alpha : new String[] {"1.0", "0.5"}) {
            Path out = tmp.resolve("p" + alpha + ".json");
            // the server has adapters a and b active together: the base rows are asked for with __base__
            CliResult r = CliResult.run("generate", "--model", url, "--row-adapters", "__base__,__base__", "--expert", small,
                    "--expert-adapter", Fixtures.dir("llama_proxy_tuning").resolve("small_lora").toString(), "--anti-expert", small,
                    "--alpha", alpha, "--input", in.toString(), "--greedy", "--max-new-tokens", ref.get("max_new_tokens").asText(),
                    "--output", out.toString());
            assertEquals(0, r.status(), r.err());
            assertEquals(ref.get("runs").get(alpha).get("ids"), ids(out), "alpha " + alpha);
        }
    }

    @Test
    void promptNeedsATokenizerAndThenEqualsTheLocalText() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("tiny"));
        Path tok = Fixtures.root().getParent().resolve("tokenizers/bpe");
        for (String f : new String[] {"config.json", "model.safetensors"}) {
            Files.copy(Path.of(base(), f), dir.resolve(f));
        }
        for (String f : new String[] {"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(tok.resolve(f), dir.resolve(f));
        }
        CliResult none = CliResult.run("generate", "--model", url, "--prompt", "Hello world");
        assertEquals(2, none.status());
        assertTrue(none.err().contains("needs --tokenizer PATH"), none.err());
        CliResult local = CliResult.run("generate", "--model", dir.toString(), "--adapter", "a=" + mixed("a"), "--adapter",
                "b=" + mixed("b"), "--prompt", "Hello world", "--max-new-tokens", "8");
        assertEquals(0, local.status(), local.err());
        CliResult remote = CliResult.run("generate", "--model", url, "--tokenizer", dir.toString(), "--prompt", "Hello world",
                "--max-new-tokens", "8");
        assertEquals(0, remote.status(), remote.err());
        assertEquals(local.out(), remote.out());
    }

    @Test
    void badUsageIsOneLine() {
        CliResult adapter = CliResult.run("generate", "--model", url, "--adapter", mixed("a"), "--input", mixed("input_ids.json"));
        assertEquals(2, adapter.status());
        assertTrue(adapter.err().contains("--adapter needs a local --model DIR"), adapter.err());
        CliResult rows = CliResult.run("generate", "--model", url, "--row-adapters", "c,a", "--input", mixed("input_ids.json"));
        assertEquals(2, rows.status());
        assertTrue(rows.err().contains("'c' is not an adapter of the server"), rows.err());
        CliResult path = CliResult.run("generate", "--model", "http://127.0.0.1:1/x", "--input", mixed("input_ids.json"));
        assertEquals(2, path.status());
        assertTrue(path.err().contains("expected http://HOST:PORT"), path.err());
        CliResult down = CliResult.run("generate", "--model", "http://127.0.0.1:1", "--input", mixed("input_ids.json"));
        assertEquals(2, down.status(), down.err());
        assertTrue(down.err().contains("remote model http://127.0.0.1:1/"), down.err());
        CliResult port = CliResult.run("serve", "--model", base(), "--port", "70000");
        assertEquals(2, port.status());
        assertTrue(port.err().contains("--port 70000 is outside [0, 65535]"), port.err());
        CliResult noPort = CliResult.run("serve", "--model", base());
        assertEquals(2, noPort.status());
        assertTrue(noPort.err().contains("--port"), noPort.err());
    }

    private static String[] concat(String[] a, String[] b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
