package io.github.peft4j.examples;

import ai.djl.ndarray.NDScope;
import io.github.peft4j.generate.DecodeSession;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.serve.LogitsServer;
import io.github.peft4j.generate.serve.RemoteLm;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * A latency micro-benchmark of {@link LogitsServer} on loopback: the time of one next-token call
 * ({@code POST /sessions/ID/next}, through {@link RemoteLm}, logits parsed into an array) against the same call
 * in process, as p50 / p99 / mean over many calls after a warm-up, two rounds alternated. The figures are in
 * docs/server.md.
 *
 * <p>Usage: {@code java -cp "peft-examples/target/classes:peft-examples/target/lib/*"
 * io.github.peft4j.examples.ServeLatency MODEL_DIR [CALLS [BATCH [PROMPT_LEN]]]} (defaults 2000, 1, 8). Each session
 * runs 32 steps, then a new one starts, so the cache stays short.
 */
public final class ServeLatency {
    private ServeLatency() {
    }

    /**
     * @param args {@code MODEL_DIR [CALLS [BATCH [PROMPT_LEN]]]}
     */
    public static void main(String[] args) {
        if (args.length < 1) {
            System.err.println("usage: ServeLatency MODEL_DIR [CALLS [BATCH [PROMPT_LEN]]]");
            System.exit(2);
        }
        Path dir = Path.of(args[0]);
        int calls = args.length > 1 ? Integer.parseInt(args[1]) : 2000;
        int batch = args.length > 2 ? Integer.parseInt(args[2]) : 1;
        int promptLen = args.length > 3 ? Integer.parseInt(args[3]) : 8;
        try (TransformerModel m = AdapterSpec.loadBase(dir, List.of())) {
            PeftModel peft = PeftModel.wrap(m);
            long[][] prompt = new long[batch][promptLen];
            for (int r = 0; r < batch; r++) {
                for (int j = 0; j < promptLen; j++) {
                    prompt[r][j] = (r * 7 + j * 13 + 1) % m.vocabSize();
                }
            }
            System.out.println("model " + m.architecture() + " (" + dir + "), vocab " + m.vocabSize() + ", batch " + batch
                    + ", prompt " + promptLen + ", " + calls + " next-token calls per round, "
                    + Runtime.getRuntime().availableProcessors() + " cores");
            try (LogitsServer server = LogitsServer.start(peft, LogitsServer.Options.defaults());
                    RemoteLm remote = RemoteLm.connect(server.uri())) {
                for (int round = 1; round <= 2; round++) { // alternated, so drift in the machine's load shows
                    System.out.println(line("round " + round + " in process", run(LanguageModel.of(peft), prompt, calls, m.vocabSize())));
                    System.out.println(line("round " + round + " loopback HTTP", run(remote, prompt, calls, m.vocabSize())));
                }
            }
        }
    }

    /** Times {@code calls} next-token calls (after as many warm-up calls, up to 500). */
    private static double[] run(LanguageModel lm, long[][] prompt, int calls, int vocab) {
        int warm = Math.min(500, calls);
        double[] ms = new double[calls];
        int done = -warm;
        long[] tokens = new long[prompt.length];
        while (done < calls) {
            try (DecodeSession s = lm.open(CallContext.NONE, true)) {
                try (NDScope scope = new NDScope()) {
                    s.start(prompt, null).toFloatArray();
                }
                for (int t = 0; t < 32 && done < calls; t++, done++) {
                    Arrays.fill(tokens, Math.floorMod(done * 31L + 5, (long) vocab));
                    long t0 = System.nanoTime();
                    try (NDScope scope = new NDScope()) {
                        s.next(tokens).toFloatArray();
                    }
                    if (done >= 0) {
                        ms[done] = (System.nanoTime() - t0) / 1e6;
                    }
                }
            }
        }
        return ms;
    }

    private static String line(String what, double[] ms) {
        double[] s = ms.clone();
        Arrays.sort(s);
        double mean = Arrays.stream(s).average().orElse(0);
        return String.format(Locale.ROOT, "%-26s p50 %.3f ms  p99 %.3f ms  mean %.3f ms", what,
                s[(int) Math.floor(0.50 * (s.length - 1))], s[(int) Math.floor(0.99 * (s.length - 1))], mean);
    }
}
