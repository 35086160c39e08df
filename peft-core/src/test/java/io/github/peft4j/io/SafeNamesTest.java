package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Adapter names become directory names and request parameters: the unsafe ones are refused with the reason. */
class SafeNamesTest {
    @ParameterizedTest
    @CsvSource(delimiter = '|', quoteCharacter = '"', value = {
        "\"\"|must not be empty",
        "..|must not contain '.'",
        "../../etc|must not contain '.'",
        "a/b|must not contain a path separator ('/')",
        "a\\b|must not contain a path separator ('\\')",
        "a.b|must not contain '.'",
        "C:x|must not contain ':'",
        "__base__|is reserved for the base model",
        "\" a\"|must not begin or end with white space",
    })
    void unsafeNamesAreRefused(String name, String reason) {
        PeftException e = assertThrows(PeftException.class, () -> SafeNames.adapterName(name));
        assertTrue(e.getMessage().startsWith("adapter name '" + name + "' " + reason), e.getMessage());
    }

    @Test
    void controlCharactersAndOverlongNamesAreRefused() {
        PeftException e = assertThrows(PeftException.class, () -> SafeNames.adapterName("a\u0000b"));
        assertEquals("adapter name 'a\\x00b' must not contain control characters; use letters, digits, '-' and '_'",
                e.getMessage()); // the message itself stays one printable line
        e = assertThrows(PeftException.class, () -> SafeNames.adapterName("a\nb"));
        assertTrue(e.getMessage().contains("control characters") && !e.getMessage().contains("\n"), e.getMessage());
        e = assertThrows(PeftException.class, () -> SafeNames.adapterName("x".repeat(SafeNames.MAX_LENGTH + 1)));
        assertTrue(e.getMessage().contains("is 129 characters long, at most 128"), e.getMessage());
        e = assertThrows(PeftException.class, () -> SafeNames.adapterName("a\u202eb")); // right-to-left override
        assertTrue(e.getMessage().contains("control characters"), e.getMessage());
    }

    @Test
    void ordinaryNamesPass() {
        for (String n : new String[] {"default", "a", "my-adapter_2", "Ünïcödé", "x".repeat(SafeNames.MAX_LENGTH)}) {
            assertEquals(n, SafeNames.adapterName(n));
        }
    }
}
