package io.github.peft4j;

/** Library constants. */
public final class Peft4j {
    /** The library version. */
    public static final String VERSION = "0.1.0";

    private Peft4j() {}
}
