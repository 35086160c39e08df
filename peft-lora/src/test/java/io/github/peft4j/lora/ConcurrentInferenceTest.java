package io.github.peft4j.lora;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.github.peft4j.PeftException;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelInput;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.testing.TinyModels;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

/**
 * One {@link PeftModel} shared by several inference threads: every thread's logits equal the single-threaded ones
 * for the same input and row adapters (base, adapter a, adapter b, mixed batches), and a change of the adapter set
 * while forward calls run on other threads is refused with a clear error.
 */
class ConcurrentInferenceTest {
    static final int THREADS = 6;
    static final int CALLS = 20;
    static final List<List<String>> CONTEXTS = List.of(List.of("a", "a"), List.of("b", "b"),
            List.of(CallContext.BASE, CallContext.BASE), List.of("a", "b"), List.of("b", CallContext.BASE));

    private static PeftModel twoAdapters(TransformerModel model) {
        PeftModel peft = PeftModel.wrap(model);
        Engine.getInstance().setRandomSeed(5);
        peft.addAdapter("a", new LoraConfig().r(4).loraAlpha(8).initLoraWeights(false).targetModules("q_proj", "v_proj"));
        peft.addAdapter("b", new LoraConfig().r(2).loraAlpha(4).initLoraWeights(false).targetModules("k_proj", "o_proj"));
        peft.setActive("a", "b");
        return peft;
    }

    private static float[] logits(PeftModel peft, int input, List<String> rows) {
        try (NDManager m = NDManager.newBaseManager()) {
            NDArray ids = TinyModels.ids(m, 2, 7, 100 + input);
            NDArray mask = m.ones(ids.getShape(), ai.djl.ndarray.types.DataType.INT64);
            return peft.forward(ModelInput.of(ids, mask).withRowAdapters(rows)).logits().toFloatArray();
        }
    }

    @Test
    void threadsSharingOnePeftModelGetTheSingleThreadedLogits() throws Exception {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = twoAdapters(model);
            float[][][] expected = new float[3][CONTEXTS.size()][];
            for (int i = 0; i < 3; i++) {
                for (int c = 0; c < CONTEXTS.size(); c++) {
                    expected[i][c] = logits(peft, i, CONTEXTS.get(c));
                }
            }
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            CountDownLatch start = new CountDownLatch(1);
            List<Future<double[]>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                int seed = t;
                results.add(pool.submit(() -> {
                    start.await();
                    double worst = 0;
                    int calls = 0;
                    for (int k = 0; k < CALLS; k++) {
                        int i = (seed + k) % 3;
                        int c = (seed * 7 + k) % CONTEXTS.size();
                        float[] got = logits(peft, i, CONTEXTS.get(c));
                        for (int j = 0; j < got.length; j++) {
                            worst = Math.max(worst, Math.abs(got[j] - expected[i][c][j]));
                        }
                        calls++;
                    }
                    return new double[] {worst, calls};
                }));
            }
            start.countDown();
            double worst = 0;
            int calls = 0;
            for (Future<double[]> f : results) {
                double[] r = f.get(5, TimeUnit.MINUTES);
                worst = Math.max(worst, r[0]);
                calls += (int) r[1];
            }
            pool.shutdown();
            assertEquals(THREADS * CALLS, calls);
            assertTrue(worst <= 1e-6, "concurrent logits differ from single-threaded ones by " + worst);
            System.out.printf("concurrent inference: %d threads x %d calls on one PeftModel (base, a, b, mixed rows): "
                    + "max|diff| vs single-threaded = %.2e%n", THREADS, CALLS, worst);
        }
    }

    @Test
    void changingAdaptersWhileOtherThreadsRunForwardIsRefused() throws Exception {
        try (TransformerModel model = TinyModels.llama()) {
            PeftModel peft = twoAdapters(model);
            AtomicBoolean stop = new AtomicBoolean();
            Thread busy = new Thread(() -> {
                while (!stop.get()) {
                    logits(peft, 0, CONTEXTS.get(3));
                }
            });
            busy.start();
            PeftException e = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (e == null && System.nanoTime() < deadline) { // a window where a forward call is in flight
                try {
                    peft.setActive("a");
                    peft.setActive("a", "b");
                } catch (PeftException refused) {
                    e = refused;
                }
            }
            stop.set(true);
            busy.join();
            assertTrue(e != null, "setActive during a forward call on another thread was refused");
            assertTrue(e.getMessage().matches("setActive: 1 forward call\\(s\\) are running on other threads; .*"),
                    e.getMessage());
            System.out.println("concurrent change refused: " + e.getMessage());
        }
    }
}
