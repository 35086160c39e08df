package io.github.peft4j.generate.serve;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import io.github.peft4j.PeftException;
import java.io.IOException;
import java.util.Arrays;

/**
 * The JSON shapes the server and the client share: fp32 arrays as nested lists with their shape beside them
 * ({@code "shape": [...], "logits": [[...]]}); floats are written in their shortest round-trip form and read back
 * with {@link Float#parseFloat}, so a logit crosses the wire bit for bit.
 */
final class Wire {
    private static final java.util.Set<String> NON_FINITE = java.util.Set.of("NaN", "Infinity", "-Infinity");

    private Wire() {
    }

    /** Writes {@code "shape": [...], "logits": nested} into the object being written. */
    static void writeLogits(JsonGenerator g, float[] data, long[] shape) throws IOException {
        g.writeArrayFieldStart("shape");
        for (long s : shape) {
            g.writeNumber(s);
        }
        g.writeEndArray();
        g.writeFieldName("logits");
        nested(g, data, shape, 0, 0);
    }

    private static int nested(JsonGenerator g, float[] data, long[] shape, int dim, int offset) throws IOException {
        g.writeStartArray();
        if (dim == shape.length - 1) {
            for (int i = 0; i < shape[dim]; i++) {
                g.writeNumber(data[offset++]);
            }
        } else {
            for (int i = 0; i < shape[dim]; i++) {
                offset = nested(g, data, shape, dim + 1, offset);
            }
        }
        g.writeEndArray();
        return offset;
    }

    /**
     * Reads the logits array the parser is positioned at (its START_ARRAY), flattened; checks it against the shape.
     *
     * @param p the parser, at the array's first token
     * @param shape the shape given beside it
     * @param where for messages
     * @return the flat data
     */
    static float[] readNested(JsonParser p, long[] shape, String where) throws IOException {
        long n = 1;
        for (long s : shape) {
            n *= s;
        }
        if (n > Integer.MAX_VALUE - 8) {
            throw new PeftException(where + ": logits of shape " + Arrays.toString(shape) + " are too large");
        }
        float[] out = new float[(int) n];
        int k = 0;
        int depth = 0;
        JsonToken t = p.currentToken();
        do {
            if (t == JsonToken.START_ARRAY) {
                depth++;
            } else if (t == JsonToken.END_ARRAY) {
                depth--;
            } else if (t == JsonToken.VALUE_NUMBER_FLOAT || t == JsonToken.VALUE_NUMBER_INT
                    || t == JsonToken.VALUE_STRING && NON_FINITE.contains(p.getText())) { // Jackson quotes NaN, Infinity
                if (k == out.length || depth != shape.length) {
                    throw new PeftException(where + ": the logits do not have the shape " + Arrays.toString(shape));
                }
                out[k++] = Float.parseFloat(p.getText());
            } else {
                throw new PeftException(where + ": unexpected " + t + " in the logits");
            }
            if (depth > 0) {
                t = p.nextToken();
            }
        } while (depth > 0);
        if (k != out.length) {
            throw new PeftException(where + ": " + k + " logits for the shape " + Arrays.toString(shape));
        }
        return out;
    }
}
