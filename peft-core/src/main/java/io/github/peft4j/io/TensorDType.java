package io.github.peft4j.io;

import ai.djl.ndarray.types.DataType;
import java.util.Optional;

/**
 * The element types of the safetensors format that peft4j can read, with their size in the file and the DJL
 * type a loaded tensor has in memory.
 *
 * <p>{@link #BF16} is held as {@link DataType#FLOAT32} and {@link #I16} as {@link DataType#INT32} in memory,
 * because DJL's PyTorch engine aborts the JVM on {@code BFLOAT16} and {@code INT16} arrays; the widening is
 * done in Java and is exact. For the same reason no array is ever written as BF16 or I16. The 8-bit float types {@code F8_E4M3} and {@code F8_E5M2} are not
 * supported: {@link #fromSafetensors(String)} returns empty for them.
 */
public enum TensorDType {
    /** 64-bit IEEE float. */
    F64("F64", 8, DataType.FLOAT64),
    /** 32-bit IEEE float. */
    F32("F32", 4, DataType.FLOAT32),
    /** 16-bit IEEE float. */
    F16("F16", 2, DataType.FLOAT16),
    /** bfloat16; widened to FLOAT32 when loaded. */
    BF16("BF16", 2, DataType.FLOAT32),
    /** 64-bit signed integer. */
    I64("I64", 8, DataType.INT64),
    /** 32-bit signed integer. */
    I32("I32", 4, DataType.INT32),
    /** 16-bit signed integer; widened to INT32 when loaded (DJL's PyTorch engine aborts on INT16). */
    I16("I16", 2, DataType.INT32),
    /** 8-bit signed integer. */
    I8("I8", 1, DataType.INT8),
    /** 8-bit unsigned integer. */
    U8("U8", 1, DataType.UINT8),
    /** Boolean, one byte per element (0 or 1). */
    BOOL("BOOL", 1, DataType.BOOLEAN);

    private final String safetensorsName;
    private final int byteSize;
    private final DataType memoryType;

    TensorDType(String safetensorsName, int byteSize, DataType memoryType) {
        this.safetensorsName = safetensorsName;
        this.byteSize = byteSize;
        this.memoryType = memoryType;
    }

    /**
     * Returns the dtype string used in a safetensors header.
     *
     * @return for example {@code "F32"} or {@code "BF16"}
     */
    public String safetensorsName() {
        return safetensorsName;
    }

    /**
     * Returns the number of bytes one element takes in the file.
     *
     * @return 1, 2, 4 or 8
     */
    public int byteSize() {
        return byteSize;
    }

    /**
     * Returns the DJL type a loaded tensor of this dtype has in memory ({@code FLOAT32} for {@link #BF16}).
     *
     * @return the in-memory DJL data type, never {@code BFLOAT16}
     */
    public DataType memoryType() {
        return memoryType;
    }

    /**
     * Returns whether this is a floating-point type.
     *
     * @return true for F64, F32, F16 and BF16
     */
    public boolean isFloating() {
        return this == F64 || this == F32 || this == F16 || this == BF16;
    }

    /**
     * Looks up a dtype by its safetensors header string (case-sensitive, as in the format).
     *
     * @param name the header string, for example {@code "F16"}
     * @return the dtype, or empty if the string is unknown or not supported (such as {@code "F8_E4M3"})
     */
    public static Optional<TensorDType> fromSafetensors(String name) {
        for (TensorDType t : values()) {
            if (t.safetensorsName.equals(name)) {
                return Optional.of(t);
            }
        }
        return Optional.empty();
    }

    /**
     * Returns the dtype in which an in-memory DJL array of the given type is written to a file.
     *
     * @param type a DJL data type
     * @return the dtype, or empty if arrays of that type cannot be written (for example {@code BFLOAT16},
     *     {@code INT16} or the unsigned types wider than 8 bits)
     */
    public static Optional<TensorDType> forWriting(DataType type) {
        switch (type) {
            case FLOAT64: return Optional.of(F64);
            case FLOAT32: return Optional.of(F32);
            case FLOAT16: return Optional.of(F16);
            case INT64: return Optional.of(I64);
            case INT32: return Optional.of(I32);
            case INT8: return Optional.of(I8);
            case UINT8: return Optional.of(U8);
            case BOOLEAN: return Optional.of(BOOL);
            default: return Optional.empty();
        }
    }

    /**
     * Checks the dtype a reader is asked to convert a floating-point tensor to.
     *
     * @param file the file, for the message
     * @param name the tensor, for the message
     * @param target the wanted type, or null (keep the in-memory type)
     * @throws io.github.peft4j.PeftException unless target is null, FLOAT32, FLOAT16 or FLOAT64 (or the tensor is not
     *     floating-point), or BFLOAT16 on an engine whose JNI supports it
     */
    void checkLoadTarget(Object file, String name, ai.djl.ndarray.types.DataType target) {
        if (target == ai.djl.ndarray.types.DataType.BFLOAT16 && isFloating()) {
            if (!io.github.peft4j.nn.FusedOps.bf16Supported()) {
                throw new io.github.peft4j.PeftException(file + ": tensor '" + name + "' cannot be loaded as BFLOAT16: this"
                        + " engine's DJL JNI has no BF16 (scripts/with-torch.sh builds one that has)");
            }
            return;
        }
        if (target != null && isFloating() && target != ai.djl.ndarray.types.DataType.FLOAT32
                && target != ai.djl.ndarray.types.DataType.FLOAT16 && target != ai.djl.ndarray.types.DataType.FLOAT64) {
            throw new io.github.peft4j.PeftException(file + ": tensor '" + name + "' is " + this
                    + " and can be loaded as FLOAT32, FLOAT16 or FLOAT64, not " + target);
        }
    }
}
