package io.github.peft4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import io.github.peft4j.PeftException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.Set;

/**
 * Reads instruction-tuning data for causal LMs from JSON lines (or a JSON array). Two record kinds, which may be
 * mixed in one file:
 * <ul>
 *   <li>Alpaca: {@code {"instruction": ..., "input": ... (optional), "output": ...}}, rendered with a
 *       {@link PromptTemplate}; the prompt is not learned, the output (and the tokenizer's EOS after it) is;</li>
 *   <li>chat: {@code {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}}, rendered turn
 *       by turn with a {@link ChatTemplate}; only the assistant turns' content and end-of-turn text are learned,
 *       plus an EOS after a final assistant turn.</li>
 * </ul>
 *
 * <p>Labels are {@link Example#IGNORE} on every prompt token and equal the token id on every learned token
 * (the usual shift happens in the loss). The pieces are tokenized separately — the first with the tokenizer's
 * special tokens (e.g. Llama's {@code <s>}), the rest without — so the prompt/response boundary is exact.
 * Examples longer than {@code maxLength} are cut at the end; a record whose prompt leaves no response token is a
 * bad record. With packing, consecutive examples are concatenated into sequences of at most {@code maxLength}
 * tokens, and each packed example's first token is set to {@link Example#IGNORE} so that no loss crosses a
 * boundary (attention does cross it: there is no block-diagonal mask).
 */
public final class InstructionData {
    private static final Set<String> ROLES = Set.of("system", "user", "assistant");

    private final Tokenizer tokenizer;
    private final PromptTemplate prompt;
    private final ChatTemplate chat;
    private final int maxLength;
    private final boolean pack;
    private final boolean appendEos;
    private final BadLinePolicy policy;

    private InstructionData(Builder b) {
        this.tokenizer = Objects.requireNonNull(b.tokenizer, "tokenizer");
        this.prompt = b.prompt;
        this.chat = b.chat;
        this.maxLength = b.maxLength;
        this.pack = b.pack;
        this.appendEos = b.appendEos;
        this.policy = b.policy;
        if (pack && maxLength <= 0) {
            throw new IllegalArgumentException("packing needs a maxLength > 0");
        }
    }

    /**
     * @param tokenizer the tokenizer
     * @return a builder (Alpaca prompt, ChatML chat, EOS appended, no length limit, no packing, policy STOP)
     */
    public static Builder builder(Tokenizer tokenizer) {
        return new Builder(tokenizer);
    }

    /**
     * Reads a file.
     *
     * @param file a JSON lines file (or a JSON array) of Alpaca or chat records
     * @return the examples (packed when asked) with the report
     * @throws PeftException for an unreadable file, or for a bad record under {@link BadLinePolicy#STOP}
     */
    public Examples read(Path file) {
        ReadReport report = new ReadReport(file, policy);
        List<Example> out = new ArrayList<>();
        JsonRecords.forEach(file, report, (line, r) -> out.add(fit(segments(r), report)));
        return new Examples(pack ? pack(out, maxLength) : out, report, null);
    }

    /**
     * Encodes one Alpaca record (no truncation).
     *
     * @param instruction the instruction
     * @param input the input, or empty
     * @param output the response to learn
     * @return the example, labels {@link Example#IGNORE} on the prompt
     * @throws PeftException when nothing is left to learn
     */
    public Example alpaca(String instruction, String input, String output) {
        try {
            return fit(alpacaSegments(instruction, input, output), null);
        } catch (BadRecord e) {
            throw new PeftException("Alpaca record: " + e.getMessage());
        }
    }

    /**
     * Encodes one conversation (no truncation).
     *
     * @param messages the turns
     * @return the example, labels {@link Example#IGNORE} except on assistant turns
     * @throws PeftException when nothing is left to learn
     */
    public Example chat(List<ChatTemplate.Message> messages) {
        try {
            return fit(chatSegments(messages), null);
        } catch (BadRecord e) {
            throw new PeftException("chat record: " + e.getMessage());
        }
    }

    /** A piece of text and whether it is learned; eos marks the tokenizer's EOS id. */
    private record Segment(String text, boolean learned, boolean eos) {
    }

    private List<Segment> segments(JsonNode r) {
        if (r.has("messages")) {
            JsonNode ms = r.get("messages");
            if (!ms.isArray() || ms.isEmpty()) {
                throw new BadRecord("field \"messages\" must be a non-empty array of {role, content} objects");
            }
            List<ChatTemplate.Message> messages = new ArrayList<>();
            for (int i = 0; i < ms.size(); i++) {
                JsonNode m = ms.get(i);
                if (!m.isObject()) {
                    throw new BadRecord("messages[" + i + "] must be an object with \"role\" and \"content\"");
                }
                String role = JsonRecords.text(m, "role");
                if (!ROLES.contains(role)) {
                    throw new BadRecord("messages[" + i + "].role must be system, user or assistant, found \""
                            + role + "\"");
                }
                messages.add(new ChatTemplate.Message(role, JsonRecords.text(m, "content")));
            }
            if (messages.stream().noneMatch(m -> m.role().equals("assistant"))) {
                throw new BadRecord("\"messages\" has no assistant turn to learn");
            }
            return chatSegments(messages);
        }
        if (!r.has("instruction") && !r.has("output")) {
            throw new BadRecord("expected an Alpaca record (\"instruction\", \"output\") or a chat record"
                    + " (\"messages\")");
        }
        return alpacaSegments(JsonRecords.text(r, "instruction"), JsonRecords.optionalText(r, "input"),
                JsonRecords.text(r, "output"));
    }

    private List<Segment> alpacaSegments(String instruction, String input, String output) {
        List<Segment> s = new ArrayList<>();
        s.add(new Segment(prompt.render(instruction, input), false, false));
        s.add(new Segment(output, true, false));
        s.add(new Segment("", true, true));
        return s;
    }

    private List<Segment> chatSegments(List<ChatTemplate.Message> messages) {
        List<Segment> s = new ArrayList<>();
        StringBuilder pending = new StringBuilder();
        for (ChatTemplate.Message m : messages) {
            pending.append(chat.header(m.role()));
            if (m.role().equals("assistant")) {
                s.add(new Segment(pending.toString(), false, false));
                pending.setLength(0);
                s.add(new Segment(m.content() + chat.footer(m.role()), true, false));
            } else {
                pending.append(m.content()).append(chat.footer(m.role()));
            }
        }
        if (pending.length() > 0) {
            s.add(new Segment(pending.toString(), false, false));
        } else {
            s.add(new Segment("", true, true));
        }
        return s;
    }

    /** Tokenizes the segments, sets labels, truncates. */
    private Example fit(List<Segment> segments, ReadReport report) {
        OptionalInt eos = tokenizer.eosTokenId();
        int[] ids = new int[0];
        int[] labels = new int[0];
        boolean first = true;
        for (Segment seg : segments) {
            int[] part;
            if (seg.eos) {
                if (!appendEos || eos.isEmpty()) {
                    continue;
                }
                part = new int[] {eos.getAsInt()};
            } else {
                if (seg.text.isEmpty() && !first) {
                    continue;
                }
                part = tokenizer.encode(seg.text, first);
                first = false;
            }
            int n = ids.length;
            ids = Arrays.copyOf(ids, n + part.length);
            labels = Arrays.copyOf(labels, n + part.length);
            System.arraycopy(part, 0, ids, n, part.length);
            for (int i = 0; i < part.length; i++) {
                labels[n + i] = seg.learned ? part[i] : Example.IGNORE;
            }
        }
        if (report != null && maxLength > 0 && ids.length > maxLength) {
            report.truncatedOne();
            ids = Arrays.copyOf(ids, maxLength);
            labels = Arrays.copyOf(labels, maxLength);
        }
        if (Arrays.stream(labels).allMatch(l -> l == Example.IGNORE)) {
            throw new BadRecord("no response token to learn (the prompt takes " + ids.length + " tokens"
                    + (maxLength > 0 ? " of max length " + maxLength : "") + ")");
        }
        return Example.labelled(ids, labels);
    }

    /**
     * Greedily concatenates consecutive examples into sequences of at most {@code maxLength} tokens, setting
     * each packed example's first label to {@link Example#IGNORE}.
     *
     * @param examples examples with per-token labels (or none: then every token is learned), each at most
     *     {@code maxLength} long
     * @param maxLength the packed sequence length
     * @return the packed examples, in order
     */
    public static List<Example> pack(List<Example> examples, int maxLength) {
        List<Example> out = new ArrayList<>();
        int[] ids = new int[maxLength];
        int[] labels = new int[maxLength];
        int n = 0;
        for (Example e : examples) {
            if (e.length() > maxLength) {
                throw new IllegalArgumentException("an example of " + e.length() + " tokens cannot be packed into "
                        + maxLength);
            }
            if (e.attentionMask() != null || e.label() >= 0) {
                throw new IllegalArgumentException("only causal-LM examples without padding can be packed");
            }
            if (n + e.length() > maxLength) {
                out.add(Example.labelled(Arrays.copyOf(ids, n), Arrays.copyOf(labels, n)));
                n = 0;
            }
            System.arraycopy(e.inputIds(), 0, ids, n, e.length());
            System.arraycopy(e.labels() != null ? e.labels() : e.inputIds(), 0, labels, n, e.length());
            labels[n] = Example.IGNORE;
            n += e.length();
        }
        if (n > 0) {
            out.add(Example.labelled(Arrays.copyOf(ids, n), Arrays.copyOf(labels, n)));
        }
        return out;
    }

    /** Options of an {@link InstructionData} reader. */
    public static final class Builder {
        private final Tokenizer tokenizer;
        private PromptTemplate prompt = PromptTemplate.ALPACA;
        private ChatTemplate chat = ChatTemplate.CHATML;
        private int maxLength;
        private boolean pack;
        private boolean appendEos = true;
        private BadLinePolicy policy = BadLinePolicy.STOP;

        private Builder(Tokenizer tokenizer) {
            this.tokenizer = tokenizer;
        }

        /** @param template the prompt of Alpaca records (default {@link PromptTemplate#ALPACA}) @return this */
        public Builder template(PromptTemplate template) {
            this.prompt = Objects.requireNonNull(template);
            return this;
        }

        /** @param template the turn layout of chat records (default {@link ChatTemplate#CHATML}) @return this */
        public Builder chatTemplate(ChatTemplate template) {
            this.chat = Objects.requireNonNull(template);
            return this;
        }

        /** @param maxLength the most tokens per example (0 = no limit) @return this */
        public Builder maxLength(int maxLength) {
            if (maxLength < 0) {
                throw new IllegalArgumentException("maxLength must be >= 0, got " + maxLength);
            }
            this.maxLength = maxLength;
            return this;
        }

        /** @param pack concatenate examples into sequences of maxLength tokens @return this */
        public Builder pack(boolean pack) {
            this.pack = pack;
            return this;
        }

        /** @param appendEos learn the tokenizer's EOS after each response (default true, if it has one) @return this */
        public Builder appendEos(boolean appendEos) {
            this.appendEos = appendEos;
            return this;
        }

        /** @param policy what to do with malformed records (default STOP) @return this */
        public Builder policy(BadLinePolicy policy) {
            this.policy = Objects.requireNonNull(policy);
            return this;
        }

        /** @return the reader */
        public InstructionData build() {
            return new InstructionData(this);
        }
    }
}
