package io.github.peft4j.data;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.peft4j.PeftException;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.PushbackReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Iterates the JSON object records of a file: JSON lines (one object per line; blank lines are not records),
 * or one JSON array of objects (as Alpaca's {@code alpaca_data.json}). Each record is handed over with the
 * line it starts on; a record the consumer rejects with {@link BadRecord}, or a line that is not a JSON
 * object, goes to the report's policy.
 */
final class JsonRecords {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Receives one record. */
    interface Consumer {
        void accept(long line, JsonNode record);
    }

    private JsonRecords() {}

    static void forEach(Path file, ReadReport report, Consumer consumer) {
        try (BufferedReader in = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            PushbackReader peek = new PushbackReader(in, 1);
            int c;
            do {
                c = peek.read();
            } while (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\uFEFF');
            if (c == '[') {
                peek.unread(c);
                array(file, peek, report, consumer);
                return;
            }
            BufferedReader lines = new BufferedReader(peek);
            if (c != -1) {
                peek.unread(c);
            }
            long lineNo = 0;
            String line;
            while ((line = lines.readLine()) != null) {
                lineNo++;
                if (line.isBlank()) {
                    continue;
                }
                report.record();
                JsonNode node;
                try {
                    node = JSON.readTree(line);
                } catch (JsonProcessingException e) {
                    report.bad(lineNo, "not valid JSON (" + e.getOriginalMessage() + ")");
                    continue;
                }
                handle(lineNo, node, report, consumer);
            }
        } catch (IOException e) {
            throw new PeftException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    private static void array(Path file, java.io.Reader in, ReadReport report, Consumer consumer) throws IOException {
        try (JsonParser p = JSON.getFactory().createParser(in)) {
            p.nextToken(); // [
            while (true) {
                JsonToken t;
                long line;
                JsonNode node;
                try {
                    t = p.nextToken();
                    line = p.currentTokenLocation().getLineNr();
                    if (t == JsonToken.END_ARRAY || t == null) {
                        return;
                    }
                    node = p.readValueAsTree();
                } catch (JsonProcessingException e) {
                    // a broken array cannot be resynchronised: stop whatever the policy
                    throw new PeftException(file + ":" + e.getLocation().getLineNr() + ": not valid JSON ("
                            + e.getOriginalMessage() + "); a JSON array file must be valid as a whole", e);
                }
                report.record();
                handle(line, node, report, consumer);
            }
        }
    }

    private static void handle(long line, JsonNode node, ReadReport report, Consumer consumer) {
        if (node == null || !node.isObject()) {
            report.bad(line, "expected a JSON object, found " + (node == null ? "nothing" : node.getNodeType()));
            return;
        }
        try {
            consumer.accept(line, node);
        } catch (BadRecord e) {
            report.bad(line, e.getMessage());
        }
    }

    /** A required non-empty string field. */
    static String text(JsonNode record, String field) {
        JsonNode v = record.get(field);
        if (v == null || v.isNull()) {
            throw new BadRecord("missing field \"" + field + "\" (expected a string)");
        }
        if (!v.isTextual()) {
            throw new BadRecord("field \"" + field + "\" must be a string, found " + v.getNodeType());
        }
        if (v.asText().isEmpty()) {
            throw new BadRecord("field \"" + field + "\" is empty");
        }
        return v.asText();
    }

    /** An optional string field ("" when absent or null). */
    static String optionalText(JsonNode record, String field) {
        JsonNode v = record.get(field);
        if (v == null || v.isNull()) {
            return "";
        }
        if (!v.isTextual()) {
            throw new BadRecord("field \"" + field + "\" must be a string, found " + v.getNodeType());
        }
        return v.asText();
    }

    /** An optional array of integers, or null when absent. */
    static int[] ints(JsonNode record, String field, boolean required) {
        JsonNode v = record.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw new BadRecord("missing field \"" + field + "\" (expected an array of integers)");
            }
            return null;
        }
        if (!v.isArray()) {
            throw new BadRecord("field \"" + field + "\" must be an array of integers, found " + v.getNodeType());
        }
        int[] out = new int[v.size()];
        for (int i = 0; i < out.length; i++) {
            JsonNode x = v.get(i);
            if (!x.isIntegralNumber() || !x.canConvertToInt()) {
                throw new BadRecord("field \"" + field + "\"[" + i + "] must be an integer, found " + x);
            }
            out[i] = x.asInt();
        }
        return out;
    }
}
