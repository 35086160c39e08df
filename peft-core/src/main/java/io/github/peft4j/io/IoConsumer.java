package io.github.peft4j.io;

import java.io.IOException;

/**
 * A consumer that may throw {@link IOException}, used to write the body of a file in
 * {@link AtomicFiles#write(java.nio.file.Path, IoConsumer)}.
 *
 * @param <T> the type of the value consumed
 */
@FunctionalInterface
public interface IoConsumer<T> {
    /**
     * Consumes a value.
     *
     * @param value the value, for example the output stream to write to
     * @throws IOException if writing fails
     */
    void accept(T value) throws IOException;
}
