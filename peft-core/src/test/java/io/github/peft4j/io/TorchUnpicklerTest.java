package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import io.github.peft4j.io.TorchUnpickler.PickleDict;
import io.github.peft4j.io.TorchUnpickler.PickleList;
import io.github.peft4j.io.TorchUnpickler.Tuple;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The scalar and container opcodes, byte by byte (values as Python's pickle reads them). */
class TorchUnpicklerTest {
    private static Object load(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) bytes[i];
        }
        return TorchUnpickler.load("t.bin: data.pkl", b, TorchUnpickler.Limits.DEFAULT);
    }

    @Test
    void integersFloatsAndConstants() {
        assertEquals(-1L, load(0x80, 2, 0x8a, 1, 0xff, '.')); // LONG1 sign-extends
        assertEquals(1L << 40, load(0x8a, 6, 0, 0, 0, 0, 0, 1, '.'));
        assertEquals(255L, load(0x8a, 2, 0xff, 0x00, '.'));
        assertEquals(0L, load(0x8a, 0, '.'));
        assertEquals(Long.MIN_VALUE, load(0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x80, '.'));
        assertEquals(-5L, load('J', 0xfb, 0xff, 0xff, 0xff, '.'));
        assertEquals(65535L, load('M', 0xff, 0xff, '.'));
        assertEquals(1.5, load('G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, '.')); // big-endian double
        assertEquals(Boolean.TRUE, load(0x88, '.'));
        assertNull(load('N', '.'));
    }

    @Test
    void containersMemoAndProtocol4Strings() {
        // protocol 4: {'a': [None, ('é', 'é')]} with MEMOIZE and BINGET of the same string
        ByteArrayOutputStream p = new ByteArrayOutputStream();
        p.writeBytes(new byte[] {(byte) 0x80, 4, '}', (byte) 0x94, (byte) 0x8c, 1, 'a', ']', 'N', 'a'});
        byte[] e = "é".getBytes(StandardCharsets.UTF_8);
        p.writeBytes(new byte[] {(byte) 0x8c, (byte) e.length});
        p.writeBytes(e);
        p.writeBytes(new byte[] {(byte) 0x94, 'h', 1, (byte) 0x86, 'a', 's', '.'});
        Object root = TorchUnpickler.load("t.bin: data.pkl", p.toByteArray(), TorchUnpickler.Limits.DEFAULT);
        PickleDict d = (PickleDict) root;
        PickleList list = (PickleList) d.items.get("a");
        assertNull(list.items.get(0));
        Tuple t = (Tuple) list.items.get(1);
        assertEquals(List.of("é", "é"), t.items);
        assertSame(t.items.get(0), t.items.get(1)); // BINGET returns the memoized object itself
        // DICT and LIST with marks, SETITEM with a None value
        PickleDict d2 = (PickleDict) load('(', 'K', 1, 'N', 'd', 'K', 2, 'N', 's', '.');
        assertTrue(d2.items.containsKey(1L) && d2.items.containsKey(2L) && d2.items.get(2L) == null);
        assertEquals(2, ((PickleList) load('(', 'K', 1, 'K', 2, 'l', '.')).items.size());
    }

    @Test
    void stackMistakesAreErrorsNotCrashes() {
        PeftException e = assertThrows(PeftException.class, () -> load('.'));
        assertEquals("t.bin: data.pkl offset 0: STOP needs an item but the stack is empty", e.getMessage());
        e = assertThrows(PeftException.class, () -> load('K', 1, 'u', '.'));
        assertEquals("t.bin: data.pkl offset 2: SETITEMS needs a MARK but there is none", e.getMessage());
        e = assertThrows(PeftException.class, () -> load('(', 'K', 1, 'K', 2, 'u', '.'));
        assertEquals("t.bin: data.pkl offset 5: SETITEMS needs an item but the stack is empty", e.getMessage());
        e = assertThrows(PeftException.class, () -> load(']', '(', 'K', 1, 'K', 2, 'u', '.'));
        assertEquals("t.bin: data.pkl offset 6: SETITEMS needs a dict, found list of 0", e.getMessage());
        e = assertThrows(PeftException.class, () -> load(0x80, 1, '.'));
        assertEquals("t.bin: data.pkl offset 0: pickle protocol 1 is not supported (torch.save writes 2)", e.getMessage());
        e = assertThrows(PeftException.class, () -> load('I', '1', '\n', '.'));
        assertEquals("t.bin: data.pkl offset 0: opcode INT (0x49) is not supported (torch.save does not write it)",
                e.getMessage());
        e = assertThrows(PeftException.class, () -> load('c', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', 0x00));
        assertTrue(e.getMessage().contains("GLOBAL name has no newline within 256 bytes (truncated)"), e.getMessage());
        e = assertThrows(PeftException.class, () -> load('c', 'o', 's', '\n', 's', 'y', 's', 0x1b, '\n', '.'));
        assertEquals("t.bin: data.pkl offset 0: global 'os.sys\\x1b' is not allowed (only torch tensor storages and "
                + "OrderedDict)", e.getMessage()); // control characters are escaped: one clean line
    }
}
