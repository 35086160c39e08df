package io.github.peft4j.data;

/** What a dataset reader does with a malformed record (bad JSON, a missing field, a wrong type, an empty text). */
public enum BadLinePolicy {
    /** Throw a {@link io.github.peft4j.PeftException} "file:line: what was expected" at the first bad record. */
    STOP,
    /** Skip the record, list it in the {@link ReadReport} and log a warning with the count. */
    SKIP
}
