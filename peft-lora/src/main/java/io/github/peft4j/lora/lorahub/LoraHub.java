package io.github.peft4j.lora.lorahub;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.PeftException;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.peft.PeftMethods;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.PeftTrainer;
import io.github.peft4j.train.Progress;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;
import org.hipparchus.exception.MathIllegalStateException;
import org.hipparchus.optim.InitialGuess;
import org.hipparchus.optim.MaxEval;
import org.hipparchus.optim.MaxIter;
import org.hipparchus.optim.SimpleBounds;
import org.hipparchus.optim.nonlinear.scalar.GoalType;
import org.hipparchus.optim.nonlinear.scalar.ObjectiveFunction;
import org.hipparchus.optim.nonlinear.scalar.noderiv.CMAESOptimizer;
import org.hipparchus.random.MersenneTwister;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * LoRAHub (Huang et al., 2023, "LoraHub: Efficient Cross-Task Generalization via Dynamic LoRA Composition"): a
 * gradient-free search for the weights {@code w} of {@code k} LoRA plug-ins on a few examples of a new task. As the
 * reference code ({@code sail-sg/lorahub}, {@code lorahub/algorithm.py}): every saved tensor of the composed adapter
 * is {@code Σ w_i T_i} (so {@code A = Σ w_i A_i} and {@code B = Σ w_i B_i}, and any modules_to_save copy likewise;
 * the plug-ins must have the same keys and shapes), the objective is the few-shot loss plus
 * {@code 0.05 · mean |w_i|}, the weights start at 0 and are bounded to {@code [-1.5, 1.5]}, and the budget counts
 * objective evaluations (40 in the reference). The reference uses nevergrad's NGOpt; peft4j uses Hipparchus' CMA-ES
 * (seeded), keeping the best point evaluated. The loss is peft4j's evaluation loss (the mean over labelled tokens or
 * examples); the reference divides the sum of its batch means by the number of examples, which for its default single
 * batch scales the loss down by that number against the penalty: not copied.
 *
 * <pre>{@code
 * LoraHub.Result r = LoraHub.builder().setModel(peft).setPlugins(List.of("a", "b", "c")).setExamples(fewShot)
 *         .optSteps(40).optSeed(42).build().search("hub");
 * peft.saveAdapter("hub", dir);   // an ordinary LoRA adapter with the best weights
 * }</pre>
 */
public final class LoraHub {
    private static final Logger LOG = LoggerFactory.getLogger(LoraHub.class);
    /** The reference code's L1 coefficient. */
    public static final double DEFAULT_L1 = 0.05;
    /** The reference code's weight bound. */
    public static final double DEFAULT_BOUND = 1.5;
    /** The reference example's budget ({@code max_inference_step}). */
    public static final int DEFAULT_STEPS = 40;

    private final Builder b;

    private LoraHub(Builder b) {
        this.b = b;
    }

    /** @return a new builder */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * One evaluation of the objective.
     *
     * @param evaluation 1-based
     * @param weights the weights tried
     * @param loss the few-shot loss there
     * @param objective loss + penalty
     * @param best the best objective so far
     */
    public record Step(int evaluation, double[] weights, double loss, double objective, double best) {}

    /**
     * The search's outcome; the adapter named in {@link #search} holds the composition with {@link #weights}.
     *
     * @param weights the best weights found, one per plug-in
     * @param loss the few-shot loss with them
     * @param objective loss + penalty there
     * @param zeroLoss the loss at the start (all weights 0: the base model with zero adapters)
     * @param evaluations objective evaluations made
     * @param history every evaluation, in order
     */
    public record Result(double[] weights, double loss, double objective, double zeroLoss, int evaluations,
            List<Step> history) {}

    /**
     * The composed adapter's tensors for given weights: {@code Σ w_i T_i} per saved key.
     *
     * @param peft the model holding the plug-ins
     * @param plugins plug-in names
     * @param weights one weight each
     * @param manager where the result lives
     * @return saved key to array
     */
    public static Map<String, NDArray> compose(PeftModel peft, List<String> plugins, double[] weights, NDManager manager) {
        return compose(cache(peft, plugins, manager), weights, manager);
    }

    private static List<Map<String, NDArray>> cache(PeftModel peft, List<String> plugins, NDManager manager) {
        List<Map<String, NDArray>> out = new ArrayList<>();
        Map<String, NDArray> first = null;
        for (String p : plugins) {
            Map<String, NDArray> sd = new LinkedHashMap<>();
            peft.stateDict(p).forEach((k, v) -> sd.put(k, Ops.ownedCopy(v, manager, v.getDataType())));
            if (first == null) {
                first = sd;
            } else if (!first.keySet().equals(sd.keySet())) {
                throw new PeftException("LoRAHub: plug-in '" + p + "' has tensors " + sd.keySet() + ", plug-in '"
                        + plugins.get(0) + "' has " + first.keySet() + "; all plug-ins must have the same keys");
            } else {
                for (String k : first.keySet()) {
                    if (!first.get(k).getShape().equals(sd.get(k).getShape())) {
                        throw new PeftException("LoRAHub: tensor '" + k + "' of plug-in '" + p + "' has shape "
                                + sd.get(k).getShape() + ", of plug-in '" + plugins.get(0) + "' " + first.get(k).getShape()
                                + "; all plug-ins must have the same architecture (rank, targets)");
                    }
                }
            }
            out.add(sd);
        }
        return out;
    }

    private static Map<String, NDArray> compose(List<Map<String, NDArray>> cache, double[] w, NDManager manager) {
        Map<String, NDArray> out = new LinkedHashMap<>();
        for (String k : cache.get(0).keySet()) {
            NDArray sum = null;
            for (int i = 0; i < cache.size(); i++) {
                NDArray t = cache.get(i).get(k).mul((float) w[i]); // no gradient here: a Java scalar is safe
                sum = sum == null ? t : sum.add(t);
            }
            sum.attach(manager);
            out.put(k, sum);
        }
        return out;
    }

    /**
     * Runs the search. Adds (or reuses) an adapter named {@code hub} with the first plug-in's config, leaves it
     * active and holding the best composition.
     *
     * @param hub the name of the composed adapter
     * @return the result
     */
    public Result search(String hub) {
        PeftModel peft = b.model;
        int k = b.plugins.size();
        if (!peft.adapterNames().contains(hub)) {
            peft.addAdapter(hub, PeftMethods.copy(peft.adapter(b.plugins.get(0)).config()));
        }
        peft.setActive(hub);
        List<Step> history = new ArrayList<>();
        double[] best = new double[k];
        double[] bestLoss = {Double.NaN};
        double[] bestObjective = {Double.POSITIVE_INFINITY};
        Progress progress = Progress.auto(0, b.steps, Math.max(1, b.steps / 10));
        try (NDManager cacheManager = NDManager.newBaseManager(peft.model().device());
                PeftTrainer evaluator = PeftTrainer.builder().setModel(peft).setTrainData(b.examples)
                        .optBatchSize(b.batchSize).optCollator(b.collator).build()) {
            List<Map<String, NDArray>> cache = cache(peft, b.plugins, cacheManager);
            ObjectiveFunction f = new ObjectiveFunction(w -> {
                if (history.size() >= b.steps) { // the optimiser may ask once more before it sees the budget
                    throw new BudgetSpent();
                }
                double[] x = w.clone();
                for (int i = 0; i < x.length; i++) {
                    x[i] = Math.max(-b.bound, Math.min(b.bound, x[i]));
                }
                double loss = loss(peft, hub, cache, x, evaluator);
                double penalty = 0;
                for (double v : x) {
                    penalty += Math.abs(v);
                }
                double objective = loss + b.l1 * penalty / k;
                if (objective < bestObjective[0]) {
                    bestObjective[0] = objective;
                    bestLoss[0] = loss;
                    System.arraycopy(x, 0, best, 0, k);
                }
                Step s = new Step(history.size() + 1, x, loss, objective, bestObjective[0]);
                history.add(s);
                progress.show(s.evaluation(), String.format(Locale.ROOT, "loss %.4f objective %.4f best %.4f %.2f eval/s",
                        loss, objective, bestObjective[0], s.evaluation() / Math.max(1e-9, progress.elapsedSeconds())));
                if (b.listener != null) {
                    b.listener.accept(s);
                }
                return objective;
            });
            double[] lower = new double[k];
            double[] upper = new double[k];
            double[] sigma = new double[k];
            Arrays.fill(lower, -b.bound);
            Arrays.fill(upper, b.bound);
            Arrays.fill(sigma, b.sigma);
            int lambda = 4 + (int) (3 * Math.log(k));
            CMAESOptimizer cmaes = new CMAESOptimizer(Integer.MAX_VALUE, Double.NEGATIVE_INFINITY, true, 0, 0,
                    new MersenneTwister(b.seed), false, null);
            try {
                cmaes.optimize(new MaxEval(Integer.MAX_VALUE), new MaxIter(Integer.MAX_VALUE), f, GoalType.MINIMIZE,
                        new InitialGuess(new double[k]), new SimpleBounds(lower, upper), new CMAESOptimizer.Sigma(sigma),
                        new CMAESOptimizer.PopulationSize(lambda));
            } catch (BudgetSpent | MathIllegalStateException e) {
                // the budget is the number of evaluations, as nevergrad's: the best point evaluated is the answer
            }
            progress.breakLine();
            try (NDScope scope = new NDScope()) {
                peft.loadStateDict(hub, compose(cache, best, peft.model().manager()), "LoRAHub composition");
            }
        }
        double zero = history.isEmpty() ? Double.NaN : history.get(0).loss();
        LOG.info("LoRAHub: {} evaluations, weights {} loss {} (objective {}, all-zero loss {})", history.size(),
                Arrays.toString(best), bestLoss[0], bestObjective[0], zero);
        return new Result(best, bestLoss[0], bestObjective[0], zero, history.size(), List.copyOf(history));
    }

    /** Thrown from the objective once the evaluation budget is spent. */
    private static final class BudgetSpent extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BudgetSpent() {
            super(null, null, false, false);
        }
    }

    /** The few-shot loss of the composition with weights {@code w}. */
    private double loss(PeftModel peft, String hub, List<Map<String, NDArray>> cache, double[] w, PeftTrainer evaluator) {
        try (NDScope scope = new NDScope()) {
            peft.loadStateDict(hub, compose(cache, w, peft.model().manager()), "LoRAHub composition");
        }
        return evaluator.evaluate(b.examples).get("loss");
    }

    /**
     * The few-shot loss of given weights (the objective without its penalty), on the adapter named {@code hub},
     * which this sets to the composition.
     *
     * @param hub the composed adapter's name (added as in {@link #search} where absent)
     * @param weights one weight per plug-in
     * @return the loss
     */
    public double lossAt(String hub, double[] weights) {
        PeftModel peft = b.model;
        if (!peft.adapterNames().contains(hub)) {
            peft.addAdapter(hub, PeftMethods.copy(peft.adapter(b.plugins.get(0)).config()));
        }
        peft.setActive(hub);
        try (NDManager m = NDManager.newBaseManager(peft.model().device());
                PeftTrainer evaluator = PeftTrainer.builder().setModel(peft).setTrainData(b.examples)
                        .optBatchSize(b.batchSize).optCollator(b.collator).build()) {
            return loss(peft, hub, cache(peft, b.plugins, m), weights, evaluator);
        }
    }

    /** Builder: {@code set*} required, {@code opt*} optional. */
    public static final class Builder {
        PeftModel model;
        List<String> plugins;
        List<Example> examples;
        int steps = DEFAULT_STEPS;
        long seed = 42;
        double bound = DEFAULT_BOUND;
        double l1 = DEFAULT_L1;
        double sigma = 0.5;
        int batchSize = 8;
        Collator collator = new Collator();
        Consumer<Step> listener;

        /** @param m the model holding the plug-ins (loaded adapters) @return this */
        public Builder setModel(PeftModel m) {
            this.model = m;
            return this;
        }

        /** @param names the plug-ins' adapter names, at least one @return this */
        public Builder setPlugins(List<String> names) {
            this.plugins = List.copyOf(names);
            return this;
        }

        /** @param data the few-shot examples (labelled for the model's task) @return this */
        public Builder setExamples(List<Example> data) {
            this.examples = List.copyOf(data);
            return this;
        }

        /** @param n objective evaluations (default 40) @return this */
        public Builder optSteps(int n) {
            this.steps = n;
            return this;
        }

        /** @param s the CMA-ES seed @return this */
        public Builder optSeed(long s) {
            this.seed = s;
            return this;
        }

        /** @param v weights are searched in {@code [-v, v]} (default 1.5) @return this */
        public Builder optBound(double v) {
            this.bound = v;
            return this;
        }

        /** @param c the L1 coefficient on {@code mean |w|} (default 0.05) @return this */
        public Builder optL1(double c) {
            this.l1 = c;
            return this;
        }

        /** @param s CMA-ES' initial step size (default 0.5) @return this */
        public Builder optSigma(double s) {
            this.sigma = s;
            return this;
        }

        /** @param n examples per forward pass (default 8) @return this */
        public Builder optBatchSize(int n) {
            this.batchSize = n;
            return this;
        }

        /** @param c how examples are padded (default: pad id 0, right) @return this */
        public Builder optCollator(Collator c) {
            this.collator = c;
            return this;
        }

        /** @param l called after every evaluation @return this */
        public Builder optListener(Consumer<Step> l) {
            this.listener = l;
            return this;
        }

        /**
         * @return the search
         * @throws PeftException naming what is missing or out of range
         */
        public LoraHub build() {
            if (model == null || plugins == null || plugins.isEmpty() || examples == null || examples.isEmpty()) {
                throw new PeftException("LoRAHub: setModel, setPlugins (at least one) and setExamples (at least one) are required");
            }
            if (steps < 1 || batchSize < 1 || !(bound > 0) || !(l1 >= 0) || !(sigma > 0)) {
                throw new PeftException("LoRAHub: need steps >= 1, batch size >= 1, bound > 0, l1 >= 0, sigma > 0; got steps "
                        + steps + ", batch " + batchSize + ", bound " + bound + ", l1 " + l1 + ", sigma " + sigma);
            }
            for (String p : plugins) {
                if (!"LORA".equals(model.adapter(p).config().peftType())) {
                    throw new PeftException("LoRAHub: plug-in '" + p + "' is " + model.adapter(p).config().peftType()
                            + "; LoRAHub composes LoRA adapters");
                }
            }
            return new LoraHub(this);
        }
    }
}
