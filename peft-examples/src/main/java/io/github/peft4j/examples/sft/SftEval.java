package io.github.peft4j.examples.sft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDScope;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.data.Batch;
import io.github.peft4j.data.Collator;
import io.github.peft4j.data.Example;
import io.github.peft4j.data.PromptTemplate;
import io.github.peft4j.data.Tokenizer;
import io.github.peft4j.generate.GenerationConfig;
import io.github.peft4j.generate.GenerationResult;
import io.github.peft4j.generate.Generator;
import io.github.peft4j.generate.LanguageModel;
import io.github.peft4j.model.CallContext;
import io.github.peft4j.model.ModelOutput;
import io.github.peft4j.peft.PeftModel;
import io.github.peft4j.train.Losses;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/** The sft-job's measurements: held-out response loss, exact match on a closed task, greedy samples. */
public final class SftEval {
    /**
     * The prompt layout: Alpaca's {@code ### Instruction:} / {@code ### Response:} sections without the preamble
     * (the job's sequences stay short on 2 cores).
     */
    public static final PromptTemplate TEMPLATE = new PromptTemplate(
            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
            "### Instruction:\n{instruction}\n\n### Response:\n");
    /** New tokens generated for a closed-task answer. */
    public static final int ANSWER_TOKENS = 3;

    private SftEval() {}

    /**
     * Mean loss over the response tokens (prompt tokens carry {@link Example#IGNORE}), without gradients.
     *
     * @param peft the model with its active adapters
     * @param data labelled examples
     * @param padId the padding id
     * @param batchSize examples per forward pass
     * @return the mean cross-entropy per response token
     */
    public static double responseLoss(PeftModel peft, List<Example> data, int padId, int batchSize) {
        boolean was = peft.model().isTraining();
        peft.model().train(false);
        Collator collator = new Collator(padId, false);
        double sum = 0;
        long items = 0;
        try {
            for (int from = 0; from < data.size(); from += batchSize) {
                try (NDScope scope = new NDScope()) {
                    Batch b = collator.collate(peft.model().manager(), data.subList(from, Math.min(data.size(), from + batchSize)));
                    NDArray labels = b.labels();
                    long n = labels.get(new NDIndex(":, 1:")).neq(Example.IGNORE).sum().getLong();
                    ModelOutput out = peft.forward(b.input());
                    NDArray logits = out.logits();
                    long extra = logits.getShape().get(1) - labels.getShape().get(1); // virtual tokens in front
                    if (extra > 0) {
                        labels = labels.getManager().full(new Shape(labels.getShape().get(0), extra), Example.IGNORE,
                                labels.getDataType()).concat(labels, 1);
                    }
                    sum += Losses.causalLm(logits, labels).getFloat() * n;
                    items += n;
                }
            }
        } finally {
            peft.model().train(was);
        }
        return sum / items;
    }

    /**
     * A greedy answer: the generated tokens and their decoded, stripped text.
     *
     * @param text the decoded continuation, stripped
     * @param tokens the generated token ids
     */
    public record Answer(String text, int[] tokens) {}

    /**
     * Greedy answers.
     *
     * @param lm the language model
     * @param tok the tokenizer
     * @param instructions the instructions (rendered with {@link #TEMPLATE})
     * @param maxNewTokens tokens to generate
     * @param batchSize rows per generate call
     * @param rowAdapters one adapter name per instruction, or null
     * @return the answers, in the order of the instructions
     */
    public static List<Answer> answers(LanguageModel lm, Tokenizer tok, List<String> instructions, int maxNewTokens,
            int batchSize, List<String> rowAdapters) {
        List<Answer> out = new ArrayList<>();
        Generator g = Generator.of(lm);
        GenerationConfig cfg = GenerationConfig.builder().maxNewTokens(maxNewTokens).build();
        for (int from = 0; from < instructions.size(); from += batchSize) {
            int to = Math.min(instructions.size(), from + batchSize);
            int[][] ids = new int[to - from][];
            for (int i = from; i < to; i++) {
                ids[i - from] = tok.encode(TEMPLATE.render(instructions.get(i), ""), true);
            }
            CallContext ctx = rowAdapters == null ? CallContext.NONE : CallContext.rowAdapters(rowAdapters.subList(from, to));
            GenerationResult r = g.generate(ids, cfg, ctx);
            for (int i = 0; i < ids.length; i++) {
                int[] t = r.tokens(i);
                out.add(new Answer(tok.decode(t, true).strip(), t));
            }
        }
        return out;
    }

    /**
     * The answers' texts.
     *
     * @param answers answers
     * @return their texts, in order
     */
    public static List<String> texts(List<Answer> answers) {
        return answers.stream().map(Answer::text).toList();
    }

    /**
     * An answer as compared: its first whitespace-separated word, lowercased, trailing punctuation removed (the
     * "take the first word" filter of evaluation harnesses: a closed-task answer is one word, and what the model
     * generates after it is not scored).
     *
     * @param answer a generated answer
     * @return the normalised answer ("" for an empty one)
     */
    public static String normalize(String answer) {
        String a = answer.strip().toLowerCase(Locale.ROOT);
        int space = 0;
        while (space < a.length() && !Character.isWhitespace(a.charAt(space))) {
            space++;
        }
        a = a.substring(0, space);
        int end = a.length();
        while (end > 0 && ".,!?;:".indexOf(a.charAt(end - 1)) >= 0) {
            end--;
        }
        return a.substring(0, end);
    }

    /**
     * Whether an answer gives a label: some prefix of its tokens decodes to a text whose {@linkplain #normalize
     * normalised} form is the label. The tokens that follow are not scored, so a label the model glues to a sub-word
     * ({@code positive|id|as}, three tokens) counts, as does {@code Positive.}; a different word that merely starts
     * with the label's letters ({@code posit|ively}) does not, because no token boundary falls after the label.
     *
     * @param tok the tokenizer that made the tokens
     * @param answer the answer
     * @param label the gold label (lowercase, one word)
     * @return true when the answer gives the label
     */
    public static boolean matches(Tokenizer tok, Answer answer, String label) {
        int[] t = answer.tokens();
        for (int n = 1; n <= t.length; n++) {
            String prefix = normalize(tok.decode(Arrays.copyOf(t, n), true));
            if (prefix.equals(label)) {
                return true;
            }
            if (prefix.length() > label.length()) {
                return false;
            }
        }
        return false;
    }

    /**
     * Exact-match accuracy: the share of answers that {@linkplain #matches give} their gold label.
     *
     * @param tok the tokenizer that made the answers' tokens
     * @param answers generated answers
     * @param gold the labels
     * @return the share of matches
     */
    public static double exactMatch(Tokenizer tok, List<Answer> answers, List<String> gold) {
        int right = 0;
        for (int i = 0; i < gold.size(); i++) {
            right += matches(tok, answers.get(i), gold.get(i)) ? 1 : 0;
        }
        return (double) right / gold.size();
    }
}
