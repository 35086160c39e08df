package io.github.peft4j.io;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.github.peft4j.PeftException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The hostile corpus (made by make_torch_bin_fixtures.py) is refused with a one-line message naming the file and
 * what was wrong, and no payload ever runs: each code-running payload would create {@link #MARKER}.
 */
class TorchBinHostileTest {
    static final Path HOSTILE = TorchBinReadTest.ROOT.resolve("hostile");
    static final Path MARKER = Path.of("/tmp/peft4j-unpickle-pwned");
    static final String NOT_ALLOWED = " is not allowed (only torch tensor storages and OrderedDict)";

    /** File name to the part of the message that says what was refused. */
    static final Map<String, String> REFUSED = new LinkedHashMap<>();

    /** Files whose pickle carries a payload that creates the marker file if run. */
    static final Set<String> PAYLOADS = Set.of("posix_system.bin", "builtins_eval.bin", "builtin_eval_protocol2.bin", "subprocess_popen.bin",
            "commands_popen.bin", "stack_global_posix_system.bin", "nested_deep_posix_system.bin",
            "os_system_global.bin", "builtins_exec_stack_global.bin", "inst_opcode.bin");

    /** Files that are sound with the default caps and are refused only under small caps (see the tests below). */
    static final Set<String> CAPS = Set.of("many_marks.bin", "many_memo.bin");

    static {
        // code-running globals, by GLOBAL and by STACK_GLOBAL, in real torch.save files and hand-made pickles
        REFUSED.put("posix_system.bin", "global 'posix.system'" + NOT_ALLOWED);
        REFUSED.put("builtins_eval.bin", "global 'builtins.eval'" + NOT_ALLOWED);
        REFUSED.put("builtin_eval_protocol2.bin", "global '__builtin__.eval'" + NOT_ALLOWED); // Python 2 name
        REFUSED.put("subprocess_popen.bin", "global 'subprocess.Popen'" + NOT_ALLOWED);
        REFUSED.put("commands_popen.bin", "global 'commands.Popen'" + NOT_ALLOWED);
        REFUSED.put("stack_global_posix_system.bin", "global 'posix.system'" + NOT_ALLOWED);
        REFUSED.put("nested_deep_posix_system.bin", "global 'posix.system'" + NOT_ALLOWED);
        REFUSED.put("os_system_global.bin", "global 'os.system'" + NOT_ALLOWED);
        REFUSED.put("builtins_exec_stack_global.bin", "global 'builtins.exec'" + NOT_ALLOWED);
        // hidden in a persistent id, as its storage type, in a tensor's backward hooks
        REFUSED.put("global_in_persistent_id.bin", "global 'posix.system'" + NOT_ALLOWED);
        REFUSED.put("global_as_storage_type.bin", "global 'posix.system'" + NOT_ALLOWED);
        REFUSED.put("global_in_hooks.bin", "global 'builtins.getattr'" + NOT_ALLOWED);
        // allowed globals where torch never puts them
        REFUSED.put("ordered_dict_as_storage_type.bin", "persistent id storage type must be a torch storage type "
                + "such as torch.FloatStorage, found global 'collections.OrderedDict'");
        REFUSED.put("reduce_storage_type.bin", "REDUCE of 'torch.FloatStorage' is not allowed (only OrderedDict() "
                + "and torch's tensor rebuild functions are called)");
        REFUSED.put("reduce_string.bin", "REDUCE of a str is not allowed");
        REFUSED.put("ordered_dict_with_args.bin", "OrderedDict is called with 1 arguments, expected none");
        REFUSED.put("build_on_tensor.bin", "BUILD on a tensor with a dict of 1 is not allowed");
        REFUSED.put("hooks_not_empty.bin", "_rebuild_tensor_v2 backward_hooks must be an empty OrderedDict, found "
                + "OrderedDict of 1");
        // opcodes that create objects
        REFUSED.put("inst_opcode.bin", "opcode INST (creates an instance of 'os.system') is not allowed");
        REFUSED.put("obj_opcode.bin", "opcode OBJ (creates an instance of an arbitrary class) is not allowed");
        REFUSED.put("newobj_opcode.bin", "opcode NEWOBJ (creates an instance of an arbitrary class) is not allowed");
        REFUSED.put("ext1_opcode.bin", "opcode EXT1 (a global from the copyreg extension registry) is not allowed");
        // malformed pickles
        REFUSED.put("truncated_pickle.bin", "(truncated)");
        REFUSED.put("oversized_binunicode.bin", "BINUNICODE length 4294967040 exceeds the 3 bytes left (truncated "
                + "or oversized)");
        REFUSED.put("memo_get_missing.bin", "GET of memo entry 9 that was never stored");
        REFUSED.put("long1_too_wide.bin", "LONG1 integer of 9 bytes does not fit in 64 bits");
        // sound pickles the records do not back
        REFUSED.put("missing_storage_record.bin", "storage record 'archive/data/7' is missing from the archive");
        REFUSED.put("numel_exceeds_record.bin", "storage '0' is FloatStorage of 1000 elements (4000 bytes) but "
                + "record 'archive/data/0' has 24 bytes");
        REFUSED.put("view_outside_storage.bin", "(shape [4, 4], stride [4, 1], offset 0) reaches element 15 but "
                + "storage '0' has 6 elements");
        REFUSED.put("storage_key_path.bin", "storage key '../data.pkl' is not a plain record name");
        // containers and contents the reader does not take
        REFUSED.put("truncated_zip.bin", "not a readable zip archive");
        REFUSED.put("legacy_format.bin", "legacy torch.save format (a bare pickle, written by PyTorch < 1.6 or with "
                + "_use_new_zipfile_serialization=False) is not supported");
        REFUSED.put("no_data_pkl.bin", "expected exactly one <archive>/data.pkl entry, found none");
        REFUSED.put("big_endian.bin", "byteorder is 'big', only 'little' is supported");
        REFUSED.put("not_a_dict.bin", "data.pkl holds a list of 1, expected a dict of tensors");
        REFUSED.put("non_tensor_value.bin", "tensor 'epoch' holds a int, expected a tensor");
        REFUSED.put("complex_tensor.bin", "storage type 'torch.ComplexFloatStorage' is not supported");
        REFUSED.put("uint16_tensor.bin", "global 'torch._utils._rebuild_tensor_v3'" + NOT_ALLOWED);
    }

    static Stream<String> refused() {
        return REFUSED.keySet().stream();
    }

    @BeforeEach
    void noMarkerYet() throws IOException {
        Files.deleteIfExists(MARKER);
    }

    @ParameterizedTest
    @MethodSource("refused")
    void hostileFileIsRefusedAndNothingRuns(String name) {
        Path file = HOSTILE.resolve(name);
        assertTrue(Files.isRegularFile(file), "fixture " + file);
        PeftException e = assertThrows(PeftException.class, () -> TorchBinFile.open(file).close());
        String message = e.getMessage();
        System.out.printf("torch-bin hostile %-34s refused: %s%n", name, message.substring(file.toString().length()));
        assertTrue(message.startsWith(file + ": "), "names the file: " + message);
        assertTrue(message.contains(REFUSED.get(name)), "expected '" + REFUSED.get(name) + "' in: " + message);
        assertFalse(message.contains("\n"), "one line: " + message);
        assertFalse(Files.exists(MARKER), name + ": a payload ran");
    }

    @Test
    void everyFileOfTheCorpusIsCovered() throws IOException {
        Set<String> files;
        try (Stream<Path> s = Files.list(HOSTILE)) {
            files = s.map(p -> p.getFileName().toString()).collect(Collectors.toCollection(TreeSet::new));
        }
        Set<String> covered = new TreeSet<>(REFUSED.keySet());
        covered.addAll(CAPS);
        assertEquals(covered, files);
        assertTrue(REFUSED.keySet().containsAll(PAYLOADS));
    }

    /** The marker check means something: these pickles really carry a command that creates it. */
    @Test
    void payloadsReallyTargetTheMarker() throws IOException {
        for (String name : PAYLOADS) {
            try (ZipFile zip = new ZipFile(HOSTILE.resolve(name).toFile())) {
                ZipEntry pkl = zip.stream().filter(z -> z.getName().endsWith("/data.pkl")).findFirst().orElseThrow();
                String text = new String(zip.getInputStream(pkl).readAllBytes(), StandardCharsets.ISO_8859_1);
                assertTrue(text.contains(MARKER.toString()), name + " carries the marker command");
            }
        }
    }

    @Test
    void stackMemoStringsItemsAndPickleSizeAreCapped() {
        Path marks = HOSTILE.resolve("many_marks.bin"); // 3000 MARKs, then {} STOP
        Path memo = HOSTILE.resolve("many_memo.bin"); // {} memoized 3000 times
        try (TorchBinFile f = TorchBinFile.open(marks); TorchBinFile g = TorchBinFile.open(memo)) {
            assertEquals(0, f.names().size()); // within the default caps both are an empty state dict
            assertEquals(0, g.names().size());
        }
        TorchUnpickler.Limits small = new TorchUnpickler.Limits(1000, 1000, 1000, 1_000_000);
        PeftException e = assertThrows(PeftException.class,
                () -> TorchBinFile.open(marks, small, TorchBinFile.MAX_PICKLE_BYTES));
        assertTrue(e.getMessage().startsWith(marks + ": data.pkl offset 1002: stack holds more than 1000 items"),
                e.getMessage());
        e = assertThrows(PeftException.class, () -> TorchBinFile.open(memo, small, TorchBinFile.MAX_PICKLE_BYTES));
        assertTrue(e.getMessage().contains("many_memo.bin: data.pkl offset 1003: memo holds more than 1000 entries"),
                e.getMessage());
        Path valid = TorchBinReadTest.VALID.resolve("dtypes.bin");
        e = assertThrows(PeftException.class,
                () -> TorchBinFile.open(valid, new TorchUnpickler.Limits(1000, 1000, 2, 1_000_000), TorchBinFile.MAX_PICKLE_BYTES));
        assertTrue(e.getMessage().contains("BINUNICODE length 3 exceeds the limit of 2 bytes"), e.getMessage());
        e = assertThrows(PeftException.class,
                () -> TorchBinFile.open(valid, new TorchUnpickler.Limits(1000, 1000, 1000, 50), TorchBinFile.MAX_PICKLE_BYTES));
        assertTrue(e.getMessage().contains("containers hold more than 50 items in all"), e.getMessage());
        e = assertThrows(PeftException.class, () -> TorchBinFile.open(valid, TorchUnpickler.Limits.DEFAULT, 100));
        assertTrue(e.getMessage().matches(".*dtypes.bin: archive/data.pkl is \\d+ bytes, more than the limit of 100"),
                e.getMessage());
    }
}
