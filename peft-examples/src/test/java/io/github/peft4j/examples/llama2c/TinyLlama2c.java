package io.github.peft4j.examples.llama2c;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/** Synthetic llama2.c files for tests. */
final class TinyLlama2c {
    private TinyLlama2c() {}

    /**
     * A tokenizer.bin: the 3 special tokens, 256 byte tokens stored as characters, then the pieces (scores -index,
     * the lone space -1e9).
     */
    static byte[] tokenizerBin(String[] pieces) {
        ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(8);
        String[] special = {"<unk>", "\n<s>\n", "\n</s>\n"};
        for (int i = 0; i < 259 + pieces.length; i++) {
            String t = i < 3 ? special[i] : i < 259 ? Character.toString(i - 3) : pieces[i - 259];
            byte[] s = t.getBytes(StandardCharsets.UTF_8);
            b.putFloat(i < 259 ? 0f : t.equals(" ") ? -1e9f : -(i - 259));
            b.putInt(s.length);
            b.put(s);
        }
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }
}
