package io.github.peft4j.data;

import java.util.Map;
import java.util.Objects;

/**
 * The prompt of an instruction record ({@code instruction}, optional {@code input}): the text before the
 * response. Placeholders {@code {instruction}} and {@code {input}} are replaced once (text from the data is
 * never re-scanned for placeholders). The response follows the prompt directly.
 *
 * @param withInput the prompt when the record has a non-empty {@code input}
 * @param withoutInput the prompt when it has none
 */
public record PromptTemplate(String withInput, String withoutInput) {
    /**
     * Stanford Alpaca's layout ({@code ### Instruction:} / {@code ### Input:} / {@code ### Response:} sections
     * under a one-line task description), worded by us.
     */
    public static final PromptTemplate ALPACA = new PromptTemplate(
            "Below is a task, together with input that gives it context. Write a response that carries out the"
                    + " task.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
            "Below is a task. Write a response that carries out the task.\n\n### Instruction:\n{instruction}\n\n"
                    + "### Response:\n");

    /** Checks the placeholders. */
    public PromptTemplate {
        Objects.requireNonNull(withInput, "withInput");
        Objects.requireNonNull(withoutInput, "withoutInput");
        if (!withInput.contains("{instruction}") || !withoutInput.contains("{instruction}")) {
            throw new IllegalArgumentException("a prompt template must contain {instruction}");
        }
        if (!withInput.contains("{input}")) {
            throw new IllegalArgumentException("the with-input prompt template must contain {input}");
        }
    }

    /**
     * One template for records with and without input ({@code {input}} becomes empty when there is none).
     *
     * @param template a prompt with {@code {instruction}} and {@code {input}}
     * @return the template
     */
    public static PromptTemplate of(String template) {
        return new PromptTemplate(template, template);
    }

    /**
     * @param instruction the instruction
     * @param input the input, or empty
     * @return the prompt text
     */
    public String render(String instruction, String input) {
        String t = input.isEmpty() ? withoutInput : withInput;
        return Placeholders.fill(t, Map.of("instruction", instruction, "input", input));
    }
}
