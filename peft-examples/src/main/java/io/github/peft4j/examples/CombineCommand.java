package io.github.peft4j.examples;

import io.github.peft4j.lora.combine.Combination;
import io.github.peft4j.lora.combine.CombinationType;
import io.github.peft4j.model.TransformerModel;
import io.github.peft4j.peft.Adapter;
import io.github.peft4j.peft.PeftModel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code peft4j combine}: HF PEFT's {@code add_weighted_adapter} on the command line. Loads the {@code --adapter}s
 * (LoRA) onto the model, combines them with {@link PeftModel#addWeightedAdapter} and saves the result as an ordinary
 * adapter directory ({@code adapter_config.json} + {@code adapter_model.safetensors}, each written to a temporary
 * file and renamed).
 */
@Command(name = "combine", sortOptions = false, separator = " ",
        description = {"Combines weighted LoRA adapters into one (HF PEFT's add_weighted_adapter) and saves it.",
            "",
            "Types as HF PEFT 0.21: linear, ties, dare_linear, dare_ties, magnitude_prune combine the A and B factors"
                + " (each weight split as sqrt(|w*scaling|), its sign on A; all adapters of one rank); cat stacks them"
                + " (rank = the sum of the ranks, exact); svd, ties_svd, dare_linear_svd, dare_ties_svd,"
                + " magnitude_prune_svd combine the dense updates and keep a truncated SVD (rank --svd-rank, default"
                + " the largest). A single adapter is always combined linearly. The dare types draw random masks"
                + " (reproducible with --seed, not HF's torch draws). The output is an ordinary adapter directory"
                + " (r = lora_alpha = the new rank, target_modules the union). Java API: PeftModel.addWeightedAdapter"
                + " with io.github.peft4j.lora.combine.Combination; docs/methods.md lists HF's quirks we match."},
        footer = {"Examples:",
            "  $ F=peft-core/src/test/resources/fixtures/hf-peft/llama_combine",
            "  $ ./peft4j combine --model peft-core/src/test/resources/fixtures/hf-peft/llama_lora/base \\",
            "        --adapter a=$F/sources/a --adapter b=$F/sources/b --adapter c=$F/sources/c \\",
            "        --weights 0.6,0.9,-0.4 --type ties --density 0.5 --output /tmp/gen/ties",
            "  combined ties density=0.5 majority_sign_method=total of a (0.6), b (0.9), c (-0.4): LORA r 4, 15 tensors; wrote /tmp/gen/ties",
            "  $ ./peft4j combine --model ... --adapter a=$F/sources/a --adapter d=$F/sources/d --weights 1,-0.7 --type linear --output /tmp/gen/x",
            "  peft4j: combination linear: all adapters must have the same r (HF's rule for linear, ...); got [a, d] with r [4, 2]; use cat or an *svd type",
            "  (CombineCliTest: the linear and cat outputs are HF's saved tensors; docs/parity.md)"})
final class CombineCommand implements Callable<Integer> {
    @ParentCommand
    Peft4jCli root;

    @Option(names = "--model", required = true, paramLabel = "DIR", converter = Converters.ExistingDir.class,
            description = "Hugging Face model directory.")
    Path model;

    @Option(names = "--adapter", required = true, paramLabel = "NAME=DIR", converter = AdapterSpec.Converter.class,
            description = "A LoRA adapter to combine (repeatable, in the order of --weights).")
    List<AdapterSpec> adapters = new ArrayList<>();

    @Option(names = "--weights", required = true, paramLabel = "W[,W...]",
            description = "One weight per --adapter, comma-separated (numbers; negative subtracts).")
    String weights;

    @Option(names = "--type", required = true, paramLabel = "TYPE", converter = Types.class, completionCandidates = Types.class,
            description = "Combination type: ${COMPLETION-CANDIDATES}.")
    String type;

    @Option(names = "--density", paramLabel = "D", converter = Converters.NonNegativeNum.class,
            description = "ties, dare and magnitude_prune types: the fraction of values kept (number >= 0; 1 or more prunes nothing, as HF).")
    Double density;

    @Option(names = "--svd-rank", paramLabel = "R", converter = Converters.Positive.class,
            description = "*svd types: the rank of the result (integer >= 1; default: the largest source rank).")
    Integer svdRank;

    @Option(names = "--svd-clamp", paramLabel = "Q", converter = Converters.NonNegativeNum.class,
            description = "*svd types: clamp the factors to this quantile of their values (number in [0, 1]; default: none).")
    Double svdClamp;

    @Option(names = "--majority-sign", paramLabel = "METHOD", converter = Signs.class, completionCandidates = Signs.class,
            description = "ties types: the sign election, ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    String majoritySign = "total";

    @Option(names = "--seed", paramLabel = "S", description = "dare types: seed of the random masks (integer; default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--output", required = true, paramLabel = "DIR", description = "Where the combined adapter is written.")
    Path output;

    @Mixin
    HelpOption help;

    /** {@code --type}. */
    static final class Types extends Choices {
        Types() {
            super(Arrays.stream(CombinationType.values()).map(CombinationType::hfName).toList());
        }
    }

    /** {@code --majority-sign}. */
    static final class Signs extends Choices {
        Signs() {
            super("total", "frequency");
        }
    }

    @Override
    public Integer call() {
        List<String> names = AdapterSpec.names("combine", adapters);
        double[] w = parseWeights(weights, names.size());
        CombinationType t = CombinationType.parse(type);
        if (t.usesDensity() && density == null) {
            throw new CliException("combine: --type " + type + " needs --density D (the fraction of values kept)");
        }
        if (!t.isSvd() && (svdRank != null || svdClamp != null)) {
            throw new CliException("combine: --svd-rank and --svd-clamp apply to the *svd types, not " + type);
        }
        Combination c = Combination.of(t).majoritySign(Combination.MajoritySign.parse(majoritySign)).seed(seed);
        if (density != null) {
            c = c.density(density);
        }
        if (svdRank != null) {
            c = c.svdRank(svdRank);
        }
        if (svdClamp != null) {
            c = c.svdClamp(svdClamp);
        }
        if (Files.exists(output) && !Files.isDirectory(output)) {
            throw new CliException("combine: --output " + output + " exists and is not a directory");
        }
        try (TransformerModel m = AdapterSpec.loadBase(model, adapters)) {
            PeftModel peft = AdapterSpec.open(m, adapters);
            String name = uniqueName(peft);
            Adapter a = peft.addWeightedAdapter(name, names, w, c);
            peft.saveAdapter(name, output);
            List<String> parts = new ArrayList<>();
            for (int i = 0; i < names.size(); i++) {
                parts.add(names.get(i) + " (" + fmt(w[i]) + ")");
            }
            root.out.printf(Locale.ROOT, "combined %s of %s: %s r %d, %d tensors; wrote %s%n", c, String.join(", ", parts),
                    a.config().peftType(), ((io.github.peft4j.lora.LoraConfig) a.config()).r(), peft.stateDict(name).size(), output);
        }
        return 0;
    }

    /** A name for the combination that no loaded adapter has. */
    private static String uniqueName(PeftModel peft) {
        String n = "combined";
        int i = 1;
        while (peft.adapterNames().contains(n)) {
            n = "combined_" + i++;
        }
        return n;
    }

    /**
     * @param v {@code w1,w2,...}
     * @param expected how many
     * @return the numbers
     */
    static double[] parseWeights(String v, int expected) {
        String[] parts = v.split(",", -1);
        if (parts.length != expected) {
            throw new CliException("--weights '" + v + "' gives " + parts.length + " weight" + (parts.length == 1 ? "" : "s")
                    + " for " + expected + " --adapter" + (expected == 1 ? "" : "s") + "; expected one per adapter");
        }
        double[] out = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                out[i] = Double.parseDouble(parts[i].trim());
            } catch (NumberFormatException e) {
                throw new CliException("--weights '" + v + "': '" + parts[i] + "' is not a number");
            }
            if (!Double.isFinite(out[i])) {
                throw new CliException("--weights '" + v + "': '" + parts[i] + "' is not a finite number");
            }
        }
        return out;
    }

    private static String fmt(double x) {
        return x == Math.rint(x) && Math.abs(x) < 1e15 ? String.valueOf((long) x) : String.valueOf(x);
    }
}
