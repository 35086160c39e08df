package io.github.peft4j.examples;

import io.github.peft4j.model.Quantization;
import io.github.peft4j.nn.quant.FourBitQuantizer;
import picocli.CommandLine.Option;

/**
 * {@code --quantize nf4|fp4 [--double-quant]} of the commands that load a model: quantise a dense checkpoint's linear
 * layers to 4 bits while loading, as transformers' {@code BitsAndBytesConfig(load_in_4bit=True)} (blocks of 64;
 * {@code lm_head}, embeddings and norms stay dense). A bnb-4bit checkpoint needs no flag: it loads 4-bit as it is.
 */
final class QuantizeOptions {
    @Option(names = "--quantize", paramLabel = "TYPE", converter = QuantTypes.class, completionCandidates = QuantTypes.class,
            description = "Quantise the model's linear layers to 4 bits while loading: ${COMPLETION-CANDIDATES}"
                    + " (bitsandbytes' codes, blocks of 64; lm_head, embeddings and norms stay dense). A bnb-4bit"
                    + " checkpoint (config.json has quantization_config) loads 4-bit without it.")
    String type;

    @Option(names = "--double-quant", description = "With --quantize: double-quantise the block absmax values"
            + " (bnb_4bit_use_double_quant; about 4.13 instead of 4.5 bits per weight).")
    boolean doubleQuant;

    /** The 4-bit codes bitsandbytes has. */
    static final class QuantTypes extends Choices {
        QuantTypes() {
            super("nf4", "fp4");
        }
    }

    /**
     * @param command the command, for the message
     * @return the quantisation asked for, or null for none
     */
    Quantization quantization(String command) {
        if (type == null) {
            if (doubleQuant) {
                throw new CliException(command + ": --double-quant needs --quantize nf4|fp4");
            }
            return null;
        }
        return Quantization.of(type, doubleQuant, FourBitQuantizer.DEFAULT_BLOCKSIZE);
    }
}
