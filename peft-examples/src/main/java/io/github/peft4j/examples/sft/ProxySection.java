package io.github.peft4j.examples.sft;

import io.github.peft4j.io.AtomicFiles;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Example;
import io.github.peft4j.examples.spam.SpamJob;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.generate.serve.LogitsServer;
import io.github.peft4j.generate.serve.RemoteLm;
import io.github.peft4j.io.SafeTensorsFile;
import io.github.peft4j.io.SafeTensorsWriter;
import io.github.peft4j.model.Models;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.prompt.proxy.ProxyTuningLm;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Proxy-tuning (Liu et al. 2024) on the opinion task: M = the job's model, used only through next-token logits served
 * by a {@link LogitsServer} (the server {@code peft4j serve} runs; started here on a free port unless a running one
 * is given); M- = M's first k decoder layers with its final norm and tied embeddings, re-trained (every weight) on
 * stories sampled from M through the server, so that it is a usable LM on M's vocabulary; M+ = M- fine-tuned (every
 * weight) on the opinion training words; proxy-tuned M decodes from {@code s_M + alpha (s_M+ - s_M-)}; M fine-tuned
 * directly with the same recipe is the upper reference.
 */
final class ProxySection {
    private static final Pattern LAYER = Pattern.compile("model\\.layers\\.(\\d+)\\..*");

    private ProxySection() {}

    static String run(SftJob.Context c, List<String[]> opinionTrain, List<String[]> opinionTest) {
        SftJob.Settings s = c.s();
        PrintStream out = c.out();
        Path dir = s.work.resolve("proxy");
        List<String> q = opinionTest.stream().map(r -> r[1]).toList();
        List<String> gold = opinionTest.stream().map(r -> r[2]).toList();
        List<Example> taskTrain = c.examples(opinionTrain);
        Map<String, Double> em = new java.util.LinkedHashMap<>();
        long t0 = System.nanoTime();
        int layersOfM = io.github.peft4j.model.HfConfig.read(c.modelDir()).integer("num_hidden_layers");
        try (TransformerModel m = Models.load(c.modelDir())) {
            LogitsServer server = s.server == null ? LogitsServer.start(PeftModel.wrap(m), LogitsServer.Options.defaults()) : null;
            try (RemoteLm remote = RemoteLm.connect(s.server != null ? s.server : server.uri(), java.time.Duration.ofMinutes(10))) {
                out.printf(Locale.ROOT, "proxy: M = %s served at %s (logits only)%n", c.modelDir(), remote.uri());
                em.put("M", SftEval.exactMatch(c.tok(), SftEval.answers(remote, c.tok(), q, SftEval.ANSWER_TOKENS, 50, null), gold));
                // M-: the first k layers, re-trained on stories sampled from M through the server
                Path minusInit = truncate(c.modelDir(), s.proxyLayers, dir.resolve("m-minus-init"));
                List<Example> stories = stories(remote, s.proxyStories, s.proxyStoryTokens, s.seed);
                Path minusDir = dir.resolve("m-minus");
                try (TransformerModel minus = Models.load(minusInit)) {
                    PeftModel p = PeftModel.wrap(minus);
                    minus.parameters().values().forEach(x -> x.setTrainable(true));
                    out.printf(Locale.ROOT, "proxy: M- = layers 0..%d of M, re-trained %d steps on %d stories of %d tokens"
                            + " sampled from M ...%n", s.proxyLayers - 1, s.proxyPretrainSteps, stories.size(), s.proxyStoryTokens);
                    SftJob.train(c, p, stories, null, s.proxyPretrainSteps, 1e-3, dir.resolve("runs-minus"), null, "m-");
                    minus.save(minusDir);
                    copyTokenizer(c.modelDir(), minusDir);
                }
                Path plusDir = dir.resolve("m-plus");
                try (TransformerModel minus = Models.load(minusDir); TransformerModel plus = Models.load(minusDir)) {
                    PeftModel pm = PeftModel.wrap(minus);
                    PeftModel pp = PeftModel.wrap(plus);
                    em.put("M-", SftEval.exactMatch(c.tok(), SftEval.answers(LanguageModel.of(pm), c.tok(), q, SftEval.ANSWER_TOKENS,
                            50, null), gold));
                    plus.parameters().values().forEach(x -> x.setTrainable(true));
                    out.printf(Locale.ROOT, "proxy: M+ = M- fine-tuned %d steps on the opinion task ...%n", s.proxySteps);
                    SftJob.train(c, pp, taskTrain, null, s.proxySteps, 3e-4, dir.resolve("runs-plus"), null, "m+");
                    plus.save(plusDir);
                    em.put("M+", SftEval.exactMatch(c.tok(), SftEval.answers(LanguageModel.of(pp), c.tok(), q, SftEval.ANSWER_TOKENS,
                            50, null), gold));
                    for (double alpha : new double[] {1.0, 2.0}) {
                        LanguageModel proxy = ProxyTuningLm.of(remote, LanguageModel.of(pp), LanguageModel.of(pm), alpha);
                        em.put(String.format(Locale.ROOT, "proxy-tuned M, alpha %.0f", alpha), SftEval.exactMatch(c.tok(),
                                SftEval.answers(proxy, c.tok(), q, SftEval.ANSWER_TOKENS, 50, null), gold));
                    }
                }
            } finally {
                if (server != null) {
                    server.close();
                }
            }
            // the upper reference: M itself fine-tuned with M+'s recipe
            PeftModel direct = PeftModel.wrap(m);
            m.parameters().values().forEach(x -> x.setTrainable(true));
            out.printf(Locale.ROOT, "proxy: M fine-tuned directly, %d steps on the opinion task ...%n", s.proxySteps);
            SftJob.train(c, direct, taskTrain, null, s.proxySteps, 3e-4, dir.resolve("runs-direct"), null, "m-direct");
            em.put("M fine-tuned directly", SftEval.exactMatch(c.tok(), SftEval.answers(LanguageModel.of(direct), c.tok(), q,
                    SftEval.ANSWER_TOKENS, 50, null), gold));
        }
        double base = em.get("M");
        double top = em.get("M fine-tuned directly");
        List<String[]> cells = new ArrayList<>();
        cells.add(new String[] {"model", "opinion exact match", "share of the M → M-direct gap closed"});
        em.forEach((k, v) -> cells.add(new String[] {k, String.format(Locale.ROOT, "%.4f", v),
            k.startsWith("proxy") || k.equals("M+") ? gap(v, base, top) : ""}));
        StringBuilder md = new StringBuilder("## Proxy-tuning\n\n");
        md.append(SpamJob.markdown(cells, 1)).append("\n\n");
        md.append(String.format(Locale.ROOT, "M = stories15M (6 layers), reached only through `POST /sessions` logits of a"
                + " LogitsServer (`peft4j serve`'s server) over HTTP; M- = its first %d layers with its final norm and tied"
                + " embeddings (%s of M's weights), every weight re-trained for %d steps (lr 1e-3) on %d stories of %d"
                + " tokens sampled from M at temperature 1 through the server (no second size of stories15M is reachable"
                + " here); M+ = M- with every weight fine-tuned %d steps (lr 3e-4, batch %d) on the %d opinion training"
                + " words; M fine-tuned directly: the same %d steps on M. Proxy-tuned M decodes greedily from"
                + " s_M + alpha (s_M+ - s_M-). Share of the gap closed = (score - M) / (M-direct - M). %d held-out words,"
                + " section time %s.%n", s.proxyLayers, s.proxyLayers + "/" + layersOfM + " of the layers",
                s.proxyPretrainSteps, s.proxyStories, s.proxyStoryTokens, s.proxySteps, s.batchSize, opinionTrain.size(), s.proxySteps, q.size(),
                SpamJob.clock((System.nanoTime() - t0) / 1e9)));
        return md.toString().stripTrailing();
    }

    private static String gap(double v, double base, double top) {
        return Math.abs(top - base) < 1e-12 ? "n/a" : String.format(Locale.ROOT, "%.0f %%", 100 * (v - base) / (top - base));
    }

    /** Stories sampled from M (BOS, then {@code tokens} tokens at temperature 1), every token learned. */
    private static List<Example> stories(LanguageModel m, int n, int tokens, long seed) {
        List<Example> out = new ArrayList<>();
        for (int b = 0; b * 16 < n; b++) {
            int rows = Math.min(16, n - b * 16);
            int[][] prompts = new int[rows][];
            for (int i = 0; i < rows; i++) {
                prompts[i] = new int[] {1};
            }
            GenerationResult r = Generator.of(m).generate(prompts, GenerationConfig.builder().maxNewTokens(tokens)
                    .doSample(true).temperature(1.0).seed(seed + b).build());
            for (int i = 0; i < rows; i++) {
                int[] t = r.tokens(i);
                int[] ids = new int[t.length + 1];
                ids[0] = 1;
                System.arraycopy(t, 0, ids, 1, t.length);
                out.add(Example.tokens(ids));
            }
        }
        return out;
    }

    /** A model directory with layers 0..k-1 of {@code src} (num_hidden_layers = k), everything else kept. */
    static Path truncate(Path src, int k, Path dst) {
        try (SafeTensorsFile f = SafeTensorsFile.open(src.resolve(SafeTensorsWriter.SINGLE_FILE));
                NDManager m = NDManager.newBaseManager()) {
            ObjectNode config = (ObjectNode) new ObjectMapper().readTree(src.resolve("config.json").toFile());
            int layers = config.path("num_hidden_layers").asInt();
            if (k >= layers) {
                throw new PeftException("sft-job: proxy M- keeps " + k + " layers, but " + src + " has only " + layers);
            }
            config.put("num_hidden_layers", k);
            Map<String, NDArray> keep = new TreeMap<>();
            for (Map.Entry<String, NDArray> e : f.loadAll(m, DataType.FLOAT32).entrySet()) {
                Matcher mt = LAYER.matcher(e.getKey());
                if (!mt.matches() || Integer.parseInt(mt.group(1)) < k) {
                    keep.put(e.getKey(), e.getValue());
                }
            }
            Files.createDirectories(dst);
            SafeTensorsWriter.write(dst.resolve(SafeTensorsWriter.SINGLE_FILE), keep, Map.of("format", "pt"));
            io.github.peft4j.io.AtomicFiles.writeString(dst.resolve("config.json"), config.toPrettyString());
            copyTokenizer(src, dst);
            return dst;
        } catch (IOException e) {
            throw new PeftException("sft-job: cannot write " + dst + ": " + e.getMessage(), e);
        }
    }

    private static void copyTokenizer(Path src, Path dst) {
        for (String f : List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json")) {
            if (Files.isRegularFile(src.resolve(f))) {
                AtomicFiles.copy(src.resolve(f), dst.resolve(f));
            }
        }
    }
}
