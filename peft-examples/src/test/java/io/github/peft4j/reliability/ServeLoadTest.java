package io.github.peft4j.reliability;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The short load test of {@code peft4j serve} in CI ({@link ServeLoad}): 4 concurrent clients x 15 requests with
 * mixed endpoints and per-row adapters, against the server on its default (loopback) address; no error, no lost or mixed-up response. Latencies are printed, never
 * asserted.
 */
class ServeLoadTest {
    @Test
    void concurrentClientsGetTheirOwnAnswers() throws Exception {
        try (ServeLoad.Serve s = new ServeLoad.Serve()) {
            assertEquals("127.0.0.1", s.uri.getHost(), "serve binds the loopback address unless --host says otherwise");
            ServeLoad.Report r = ServeLoad.run(s.uri, 4, 15, 3);
            System.out.println("serve load (CI): " + r);
            assertEquals(0, r.errors(), r.toString());
            assertEquals(0, r.mismatches(), r.toString());
            assertEquals(60, r.requests());
        }
    }
}
