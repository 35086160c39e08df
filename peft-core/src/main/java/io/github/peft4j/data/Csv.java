package io.github.peft4j.data;

import java.io.IOException;
import java.io.Reader;
import java.util.ArrayList;
import java.util.List;

/**
 * A small RFC 4180 CSV reader: comma-separated fields, fields in double quotes may hold commas, newlines and
 * doubled quotes ({@code ""} for {@code "}); lines end with LF or CRLF. Reports the line each row starts on.
 */
final class Csv {
    /** One row. @param line the 1-based line where it starts @param fields its fields */
    record Row(long line, List<String> fields) {
    }

    private final Reader in;
    private long line = 1;
    private int pending = -2;

    Csv(Reader in) {
        this.in = in;
    }

    private int read() throws IOException {
        if (pending != -2) {
            int c = pending;
            pending = -2;
            return c;
        }
        return in.read();
    }

    /**
     * @return the next row, or null at the end of the input
     * @throws BadRecord for a quote that is never closed or text after a closing quote (the reader cannot
     *     resynchronise after these, so the caller stops)
     */
    Row next() throws IOException {
        int c = read();
        if (c == -1) {
            return null;
        }
        long start = line;
        List<String> fields = new ArrayList<>();
        StringBuilder field = new StringBuilder();
        while (true) {
            if (c == '"' && field.length() == 0) {
                // quoted field
                while (true) {
                    c = read();
                    if (c == -1) {
                        throw new BadRecord("line " + start + ": a quoted field opened on this line is never closed");
                    }
                    if (c == '\n') {
                        line++;
                    }
                    if (c == '"') {
                        int d = read();
                        if (d == '"') {
                            field.append('"');
                            continue;
                        }
                        c = d;
                        break;
                    }
                    field.append((char) c);
                }
                if (c != ',' && c != '\n' && c != '\r' && c != -1) {
                    throw new BadRecord("line " + line + ": unexpected character '" + (char) c + "' after a closing quote (quotes"
                            + " inside a quoted field must be doubled)");
                }
                continue;
            }
            if (c == ',') {
                fields.add(field.toString());
                field.setLength(0);
                c = read();
                continue;
            }
            if (c == '\r') {
                int d = read();
                if (d != '\n') {
                    pending = d;
                }
                c = '\n';
            }
            if (c == '\n' || c == -1) {
                if (c == '\n') {
                    line++;
                }
                fields.add(field.toString());
                return new Row(start, fields);
            }
            field.append((char) c);
            c = read();
        }
    }
}
