package io.github.peft4j.data;

import java.util.Map;
import java.util.Objects;

/**
 * How a chat turn is written: a turn template with {@code {role}} and {@code {content}}, e.g. ChatML's
 * {@code <|im_start|>{role}\n{content}<|im_end|>\n}. For an assistant turn the text after {@code {content}}
 * (the end-of-turn marker) is learned with the content, so the model learns to stop; the text before it
 * (the role header) is prompt.
 *
 * @param turn the turn template, containing {@code {content}} once and optionally {@code {role}}
 */
public record ChatTemplate(String turn) {
    /** ChatML (Qwen, many fine-tunes): {@code <|im_start|>role\ncontent<|im_end|>\n}. */
    public static final ChatTemplate CHATML = new ChatTemplate("<|im_start|>{role}\n{content}<|im_end|>\n");

    /** Checks the template. */
    public ChatTemplate {
        Objects.requireNonNull(turn, "turn");
        int at = turn.indexOf("{content}");
        if (at < 0 || turn.indexOf("{content}", at + 1) >= 0) {
            throw new IllegalArgumentException("a chat turn template must contain {content} exactly once: " + turn);
        }
    }

    /**
     * @param role the role
     * @return the text written before a turn's content
     */
    public String header(String role) {
        return Placeholders.fill(turn.substring(0, turn.indexOf("{content}")), Map.of("role", role));
    }

    /**
     * @param role the role
     * @return the text written after a turn's content
     */
    public String footer(String role) {
        return Placeholders.fill(turn.substring(turn.indexOf("{content}") + "{content}".length()),
                Map.of("role", role));
    }

    /**
     * One chat message.
     *
     * @param role {@code system}, {@code user} or {@code assistant}
     * @param content the text
     */
    public record Message(String role, String content) {
    }
}
