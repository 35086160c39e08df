package io.github.peft4j.data;

/** Thrown inside a reader for a malformed record; the record loop turns it into "file:line: message". */
final class BadRecord extends RuntimeException {
    private static final long serialVersionUID = 1L;

    BadRecord(String message) {
        super(message, null, false, false);
    }
}
