package io.github.peft4j.examples;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The {@code logits} command's input: {@code {"input_ids": [[...]], "attention_mask": [[...]],
 * "token_type_ids": [[...]]}} (the last two optional), validated with errors naming the file and entry.
 */
final class InputFile {
    final long[][] inputIds;
    final long[][] attentionMask;
    final long[][] tokenTypeIds;

    private InputFile(long[][] ids, long[][] mask, long[][] types) {
        this.inputIds = ids;
        this.attentionMask = mask;
        this.tokenTypeIds = types;
    }

    static InputFile read(Path file, int vocab) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new CliException(file + ": malformed JSON: " + e.getMessage().split("\n")[0]);
        }
        if (root == null || !root.isObject()) {
            throw new CliException(file + ": expected a JSON object with \"input_ids\"");
        }
        long[][] ids = matrix(file, root, "input_ids", true);
        for (int i = 0; i < ids.length; i++) {
            for (int j = 0; j < ids[i].length; j++) {
                if (ids[i][j] < 0 || ids[i][j] >= vocab) {
                    throw new CliException(file + ": input_ids[" + i + "][" + j + "] = " + ids[i][j]
                            + " is outside the model's vocabulary [0, " + vocab + ")");
                }
            }
        }
        long[][] mask = matrix(file, root, "attention_mask", false);
        long[][] types = matrix(file, root, "token_type_ids", false);
        for (long[][] other : new long[][][] {mask, types}) {
            if (other != null && (other.length != ids.length || other[0].length != ids[0].length)) {
                throw new CliException(file + ": attention_mask / token_type_ids must have the shape of input_ids ["
                        + ids.length + ", " + ids[0].length + "]");
            }
        }
        if (mask != null) {
            for (int i = 0; i < mask.length; i++) {
                for (int j = 0; j < mask[i].length; j++) {
                    if (mask[i][j] != 0 && mask[i][j] != 1) {
                        throw new CliException(file + ": attention_mask[" + i + "][" + j + "] = " + mask[i][j] + ", expected 0 or 1");
                    }
                }
            }
        }
        return new InputFile(ids, mask, types);
    }

    private static long[][] matrix(Path file, JsonNode root, String key, boolean required) {
        JsonNode n = root.get(key);
        if (n == null || n.isNull()) {
            if (required) {
                throw new CliException(file + ": missing \"" + key + "\" (a list of equal-length lists of integers)");
            }
            return null;
        }
        if (!n.isArray() || n.size() == 0) {
            throw new CliException(file + ": \"" + key + "\" must be a non-empty list of lists of integers");
        }
        int cols = -1;
        long[][] out = new long[n.size()][];
        for (int i = 0; i < n.size(); i++) {
            JsonNode row = n.get(i);
            if (!row.isArray() || row.size() == 0) {
                throw new CliException(file + ": " + key + "[" + i + "] must be a non-empty list of integers");
            }
            if (cols >= 0 && row.size() != cols) {
                throw new CliException(file + ": " + key + "[" + i + "] has " + row.size() + " entries, row 0 has " + cols
                        + " (pad rows to equal length and mask the padding)");
            }
            cols = row.size();
            out[i] = new long[cols];
            for (int j = 0; j < cols; j++) {
                JsonNode v = row.get(j);
                if (!v.isIntegralNumber()) {
                    throw new CliException(file + ": " + key + "[" + i + "][" + j + "] = " + v + " is not an integer");
                }
                out[i][j] = v.asLong();
            }
        }
        return out;
    }

    static NDArray toArray(NDManager m, long[][] rows) {
        if (rows == null) {
            return null;
        }
        long[] flat = new long[rows.length * rows[0].length];
        for (int i = 0; i < rows.length; i++) {
            System.arraycopy(rows[i], 0, flat, i * rows[0].length, rows[0].length);
        }
        return m.create(flat, new Shape(rows.length, rows[0].length));
    }
}
