package io.github.peft4j.testing;

import java.nio.file.Path;

/**
 * The tiny test tokenizers made by {@code peft-core/src/test/python/make_tokenizers.py} (every id below
 * 128, the vocabulary of {@link TinyModels}' configs), for tests of every module. Both are deterministic.
 */
public final class TestTokenizers {
    private TestTokenizers() {}

    /** @return the fixtures directory holding {@code bpe/}, {@code wordpiece/} and {@code expected.json} */
    public static Path root() {
        return Fixtures.root().resolveSibling("tokenizers");
    }

    /**
     * Byte-level BPE (Llama/GPT-2 style): {@code <s>}=0 prepended, {@code </s>}=1 eos, {@code <pad>}=2,
     * {@code <|im_start|>}=3, {@code <|im_end|>}=4.
     *
     * @return its directory
     */
    public static Path bpe() {
        return root().resolve("bpe");
    }

    /**
     * BERT-style WordPiece (111 tokens; longer words split into {@code ##} pieces), lower-casing: {@code [PAD]}=0, {@code [UNK]}=1, {@code [CLS]}=2, {@code [SEP]}=3,
     * {@code [MASK]}=4; encodes as {@code [CLS] ... [SEP]}.
     *
     * @return its directory
     */
    public static Path wordpiece() {
        return root().resolve("wordpiece");
    }
}
