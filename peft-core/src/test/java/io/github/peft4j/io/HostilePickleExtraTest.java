package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * More hostile pickles, beside the torch.save corpus of {@link TorchBinHostileTest}: import tricks, globals named
 * through the memo, code-running globals nested inside allowed calls, torch's own recursive loaders, a
 * self-referencing container and a reference bomb. Every one is refused with one line naming what was refused; the
 * unpickler has no way to call anything, so nothing can run.
 */
class HostilePickleExtraTest {
    /** Builds pickle bytes from chars, ints (single bytes) and strings (their UTF-8 bytes). */
    static byte[] p(Object... parts) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (Object o : parts) {
            if (o instanceof String s) {
                b.writeBytes(s.getBytes(StandardCharsets.UTF_8));
            } else if (o instanceof Character c) {
                b.write(c);
            } else {
                b.write((Integer) o);
            }
        }
        return b.toByteArray();
    }

    static Stream<Arguments> hostile() {
        return Stream.of(
                Arguments.of("builtins.__import__", p(0x80, 2, "cbuiltins\n__import__\n", '(', "X", 2, 0, 0, 0, "os",
                        't', 'R', '.'), "global 'builtins.__import__' is not allowed"),
                Arguments.of("stack global through the memo", p(0x80, 4, 0x8c, 5, "posix", 0x94, 0x8c, 6, "system", 0x94,
                        'h', 0, 'h', 1, 0x93, '.'), "global 'posix.system' is not allowed"),
                Arguments.of("copyreg reconstructor", p(0x80, 2, "ccopyreg\n_reconstructor\n", '.'),
                        "global 'copyreg._reconstructor' is not allowed"),
                Arguments.of("torch recursive loader", p(0x80, 2, "ctorch.storage\n_load_from_bytes\n", '.'),
                        "global 'torch.storage._load_from_bytes' is not allowed"),
                Arguments.of("numpy reconstruct", p(0x80, 2, "cnumpy.core.multiarray\n_reconstruct\n", '.'),
                        "global 'numpy.core.multiarray._reconstruct' is not allowed"),
                Arguments.of("posix.system inside _rebuild_tensor_v2's arguments", p(0x80, 2,
                        "ctorch._utils\n_rebuild_tensor_v2\n", '(', "cposix\nsystem\n", '(', "X", 2, 0, 0, 0, "id", 't',
                        'R', 'K', 0, ')', ')', 0x89, "ccollections\nOrderedDict\n", ')', 'R', 't', 'R', '.'),
                        "global 'posix.system' is not allowed"),
                Arguments.of("REDUCE of a list", p(0x80, 2, ']', ')', 'R', '.'), "REDUCE of a list of 0 is not allowed"),
                Arguments.of("NEWOBJ_EX", p(0x80, 4, 0x8c, 1, "x", 0x8c, 1, "y", 0x93, ')', '}', 0x92, '.'),
                        "not allowed"),
                Arguments.of("self-containing list", p(0x80, 2, ']', 'q', 0, 'h', 0, 'a', '.'),
                        "holds a list of 1, expected a dict of tensors"),
                Arguments.of("truncated BINUNICODE8", p(0x80, 4, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, "ab"),
                        "exceeds"),
                Arguments.of("empty pickle", p(), "(truncated)"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("hostile")
    void refusedWithOneLine(String name, byte[] pickle, String expected) {
        PeftException e = assertThrows(PeftException.class, () -> {
            Object root = TorchUnpickler.load("x.bin: data.pkl", pickle, TorchUnpickler.Limits.DEFAULT);
            if (!(root instanceof TorchUnpickler.PickleDict)) { // as TorchBinFile checks the root
                throw new PeftException("x.bin: data.pkl holds a " + TorchUnpickler.typeName(root)
                        + ", expected a dict of tensors (a state dict)");
            }
        });
        assertTrue(e.getMessage().contains(expected), name + ": " + e.getMessage());
        assertFalse(e.getMessage().contains("\n"), name);
        System.out.println("hostile pickle " + name + ": " + e.getMessage());
    }

    @Test
    void aReferenceBombHitsTheItemCap() {
        // a list holding 2000 references to one memoised list: cheap bytes, many items
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        b.writeBytes(p(0x80, 2, ']', 'q', 0, ']', '('));
        for (int i = 0; i < 2000; i++) {
            b.writeBytes(p('h', 0));
        }
        b.writeBytes(p('e', '.'));
        PeftException e = assertThrows(PeftException.class, () -> TorchUnpickler.load("x.bin: data.pkl", b.toByteArray(),
                new TorchUnpickler.Limits(1 << 20, 1 << 10, 1 << 10, 1000)));
        assertTrue(e.getMessage().contains("containers hold more than 1000 items in all"), e.getMessage());
    }
}
