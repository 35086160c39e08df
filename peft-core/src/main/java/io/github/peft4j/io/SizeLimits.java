package io.github.peft4j.io;

import io.github.peft4j.PeftException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The largest files peft4j reads whole into memory, checked before reading so that a hostile or broken download
 * cannot exhaust the heap. Tensor data is never read whole (it is mapped, see {@link SafeTensorsFile}); the
 * safetensors header ({@link SafeTensorsFile#MAX_HEADER_BYTES}, metadata included), a torch.save pickle
 * ({@link TorchBinFile#MAX_PICKLE_BYTES}) and a server request body ({@code --max-body-bytes}) have their own caps.
 * JSON is parsed with Jackson's default constraints as well (nesting depth 1,000, strings of 20 M characters,
 * numbers of 1,000 digits).
 */
public final class SizeLimits {
    /** A model's {@code config.json}, an {@code adapter_config.json}, {@code trainer_state.json} and the like. */
    public static final long CONFIG_JSON = 16L << 20;
    /** A sharded checkpoint's {@code model.safetensors.index.json}. */
    public static final long INDEX_JSON = 64L << 20;
    /** A {@code tokenizer.json} (the largest public ones are about 35 MB). */
    public static final long TOKENIZER_JSON = 512L << 20;

    private SizeLimits() {}

    /**
     * @param file a file about to be read whole
     * @param limit the most bytes allowed
     * @return the file
     * @throws PeftException naming the file if it is larger
     */
    public static Path check(Path file, long limit) {
        long size;
        try {
            size = Files.size(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
        if (size > limit) {
            throw new PeftException(file + ": " + size + " bytes, more than the limit of " + limit + " for this kind of"
                    + " file (truncated download or not the file expected?)");
        }
        return file;
    }
}
