package io.github.peft4j.io;

import io.github.peft4j.PeftException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A restricted reader for the pickle that {@code torch.save} writes as {@code data.pkl}.
 *
 * <p>It is not a Python unpickler: it runs no code and creates no objects of named classes. It understands the
 * opcodes a pickled state dict needs (containers, strings, numbers, memo, persistent ids) and evaluates
 * {@code REDUCE} only for a fixed list of callables, each by Java code that builds a plain description:
 * {@code collections.OrderedDict()} gives an empty map, {@code torch._utils._rebuild_tensor_v2},
 * {@code _rebuild_tensor} and {@code _rebuild_parameter} give a {@link TensorRef}. A {@code GLOBAL} or
 * {@code STACK_GLOBAL} naming anything else is refused when it is read, before any later opcode; opcodes that
 * create arbitrary objects ({@code INST}, {@code OBJ}, {@code NEWOBJ}, ...) are refused outright. Every length
 * is checked against the bytes left, and the stack, the memo and strings are capped.
 *
 * <p>Values are modelled as: {@link String}, {@link Long}, {@link Double}, {@link Boolean}, {@code null} (None),
 * {@link Tuple}, {@link PickleList}, {@link PickleDict}, {@link Global}, {@link StorageRef}, {@link TensorRef}.
 * None of them has a recursive {@code equals}, {@code hashCode} or {@code toString}, so hostile self-referencing
 * or deeply nested structures cannot overflow the Java stack.
 */
final class TorchUnpickler {

    /**
     * Caps on what one pickle may use.
     *
     * @param maxStack the most items on the stack, marks included
     * @param maxMemo the most memo entries
     * @param maxStringBytes the longest string, in UTF-8 bytes
     * @param maxItems the most items put into tuples, lists and dicts altogether (a dict entry counts once)
     */
    record Limits(int maxStack, int maxMemo, int maxStringBytes, long maxItems) {
        /** Ample for state dicts of several hundred thousand tensors, small enough to bound memory. */
        static final Limits DEFAULT = new Limits(1 << 20, 1 << 22, 1 << 20, 1L << 23);
    }

    /** A torch storage element type: the {@code torch.*Storage} class name and the dtype of its elements. */
    enum StorageType {
        DOUBLE("DoubleStorage", TensorDType.F64),
        FLOAT("FloatStorage", TensorDType.F32),
        HALF("HalfStorage", TensorDType.F16),
        BFLOAT16("BFloat16Storage", TensorDType.BF16),
        LONG("LongStorage", TensorDType.I64),
        INT("IntStorage", TensorDType.I32),
        SHORT("ShortStorage", TensorDType.I16),
        CHAR("CharStorage", TensorDType.I8),
        BYTE("ByteStorage", TensorDType.U8),
        BOOL("BoolStorage", TensorDType.BOOL);

        final String className;
        final TensorDType dtype;

        StorageType(String className, TensorDType dtype) {
            this.className = className;
            this.dtype = dtype;
        }
    }

    /** A global the allow-list admits, as pushed by {@code GLOBAL}; {@code storage} is set for storage types. */
    static final class Global {
        final String module;
        final String name;
        final StorageType storage;

        Global(String module, String name, StorageType storage) {
            this.module = module;
            this.name = name;
            this.storage = storage;
        }

        String qualified() {
            return module + "." + name;
        }
    }

    /** An immutable pickled tuple. */
    static final class Tuple {
        final List<Object> items;

        Tuple(List<Object> items) {
            this.items = Collections.unmodifiableList(items);
        }
    }

    /** A pickled list. */
    static final class PickleList {
        final List<Object> items = new ArrayList<>();
    }

    /** A pickled dict; {@code ordered} if it was made by {@code collections.OrderedDict()}. */
    static final class PickleDict {
        final Map<Object, Object> items = new LinkedHashMap<>();
        final boolean ordered;

        PickleDict(boolean ordered) {
            this.ordered = ordered;
        }
    }

    /**
     * A storage named by a persistent id {@code ('storage', torch.XStorage, key, location, numel)}.
     *
     * @param key the record name under {@code data/}
     * @param type the element type
     * @param location the device it was saved from, e.g. {@code cpu}
     * @param numel the number of elements of the storage
     */
    record StorageRef(String key, StorageType type, String location, long numel) {}

    /** A tensor: a strided view of a storage, as {@code _rebuild_tensor_v2} would make it. */
    static final class TensorRef {
        final StorageRef storage;
        final long offset;
        final long[] size;
        final long[] stride;

        TensorRef(StorageRef storage, long offset, long[] size, long[] stride) {
            this.storage = storage;
            this.offset = offset;
            this.size = size;
            this.stride = stride;
        }
    }

    static final String NOT_ALLOWED = "is not allowed (only torch tensor storages and OrderedDict)";

    private static final String ORDERED_DICT = "collections.OrderedDict";
    private static final String REBUILD_V2 = "torch._utils._rebuild_tensor_v2";
    private static final String REBUILD = "torch._utils._rebuild_tensor";
    private static final String REBUILD_PARAMETER = "torch._utils._rebuild_parameter";
    private static final Set<String> CALLABLES = Set.of(ORDERED_DICT, REBUILD_V2, REBUILD, REBUILD_PARAMETER);
    private static final Map<String, StorageType> STORAGES = new HashMap<>();

    static {
        for (StorageType t : StorageType.values()) {
            STORAGES.put("torch." + t.className, t);
        }
    }

    private final String where;
    private final ByteBuffer in;
    private final Limits limits;
    private final List<Object> stack = new ArrayList<>();
    private final List<Integer> marks = new ArrayList<>();
    private final Map<Long, Object> memo = new HashMap<>();
    private final Map<String, StorageRef> storages = new HashMap<>();
    private int opStart;
    private long items;

    private TorchUnpickler(String where, byte[] data, Limits limits) {
        this.where = where;
        this.in = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        this.limits = limits;
    }

    /**
     * Reads one pickle.
     *
     * @param where the prefix of every error message, e.g. {@code "/x/adapter_model.bin: data.pkl"}
     * @param data the pickle bytes
     * @param limits the caps
     * @return the value the pickle's {@code STOP} returns
     * @throws PeftException for anything outside the supported subset, naming {@code where}, the offset and
     *     what was found
     */
    static Object load(String where, byte[] data, Limits limits) {
        return new TorchUnpickler(where, data, limits).run();
    }

    private Object run() {
        while (true) {
            if (!in.hasRemaining()) {
                throw fail("ends at byte " + in.position() + " without a STOP opcode (truncated)");
            }
            opStart = in.position();
            int op = in.get() & 0xFF;
            switch (op) {
                case 0x80 -> { // PROTO
                    int proto = u8("PROTO");
                    if (proto < 2 || proto > 5) {
                        throw fail("pickle protocol " + proto + " is not supported (torch.save writes 2)");
                    }
                }
                case 0x95 -> { // FRAME: a length hint, checked and otherwise ignored
                    long n = in8("FRAME");
                    if (n < 0 || n > in.remaining()) {
                        throw fail("FRAME of " + Long.toUnsignedString(n) + " bytes but " + in.remaining()
                                + " bytes are left (truncated)");
                    }
                }
                case '.' -> { // STOP
                    Object result = pop("STOP");
                    return result;
                }
                case '(' -> { // MARK
                    checkRoom();
                    marks.add(stack.size());
                }
                case '0' -> pop("POP");
                case 'N' -> push(null);
                case 0x88 -> push(Boolean.TRUE);
                case 0x89 -> push(Boolean.FALSE);
                case 'K' -> push((long) u8("BININT1"));
                case 'M' -> push((long) (need(2, "BININT2").getShort() & 0xFFFF));
                case 'J' -> push((long) need(4, "BININT").getInt());
                case 0x8a -> push(long1());
                case 'G' -> push(need(8, "BINFLOAT").order(ByteOrder.BIG_ENDIAN).getDouble());
                case 'X' -> push(string(need(4, "BINUNICODE").getInt() & 0xFFFFFFFFL, "BINUNICODE"));
                case 0x8c -> push(string(u8("SHORT_BINUNICODE"), "SHORT_BINUNICODE"));
                case 0x8d -> push(string(in8("BINUNICODE8"), "BINUNICODE8"));
                case ')' -> push(new Tuple(new ArrayList<>()));
                case 0x85 -> push(tuple(1));
                case 0x86 -> push(tuple(2));
                case 0x87 -> push(tuple(3));
                case 't' -> push(new Tuple(counted(popMark("TUPLE"))));
                case '}' -> push(new PickleDict(false));
                case ']' -> push(new PickleList());
                case 'l' -> {
                    PickleList list = new PickleList();
                    list.items.addAll(counted(popMark("LIST")));
                    push(list);
                }
                case 'd' -> {
                    PickleDict dict = new PickleDict(false);
                    putPairs(dict, popMark("DICT"));
                    push(dict);
                }
                case 'a' -> {
                    Object v = pop("APPEND");
                    list("APPEND").items.addAll(counted(Arrays.asList(v)));
                }
                case 'e' -> {
                    List<Object> appended = counted(popMark("APPENDS"));
                    list("APPENDS").items.addAll(appended);
                }
                case 's' -> {
                    Object v = pop("SETITEM");
                    Object k = pop("SETITEM");
                    putPairs(dict("SETITEM"), Arrays.asList(k, v));
                }
                case 'u' -> {
                    List<Object> pairs = popMark("SETITEMS");
                    putPairs(dict("SETITEMS"), pairs);
                }
                case 'q' -> memoPut(u8("BINPUT"));
                case 'r' -> memoPut(need(4, "LONG_BINPUT").getInt() & 0xFFFFFFFFL);
                case 0x94 -> memoPut(memo.size());
                case 'h' -> push(memoGet(u8("BINGET")));
                case 'j' -> push(memoGet(need(4, "LONG_BINGET").getInt() & 0xFFFFFFFFL));
                case 'c' -> {
                    String module = line("GLOBAL");
                    String name = line("GLOBAL");
                    push(global(module, name));
                }
                case 0x93 -> { // STACK_GLOBAL
                    Object name = pop("STACK_GLOBAL");
                    Object module = pop("STACK_GLOBAL");
                    if (!(module instanceof String m) || !(name instanceof String n)) {
                        throw fail("STACK_GLOBAL needs two strings, found " + typeName(module) + " and "
                                + typeName(name));
                    }
                    push(global(m, n));
                }
                case 'Q' -> push(persistentId(pop("BINPERSID")));
                case 'R' -> {
                    Object args = pop("REDUCE");
                    Object callable = pop("REDUCE");
                    push(reduce(callable, args));
                }
                case 'b' -> {
                    Object state = pop("BUILD");
                    build(peek("BUILD"), state);
                }
                case 'i' -> {
                    String module = line("INST");
                    String name = line("INST");
                    throw fail("opcode INST (creates an instance of '" + printable(module + "." + name)
                            + "') is not allowed");
                }
                case 'o' -> throw fail("opcode OBJ (creates an instance of an arbitrary class) is not allowed");
                case 0x81 -> throw fail("opcode NEWOBJ (creates an instance of an arbitrary class) is not allowed");
                case 0x92 -> throw fail("opcode NEWOBJ_EX (creates an instance of an arbitrary class) is not allowed");
                case 0x82, 0x83, 0x84 -> throw fail("opcode EXT" + (op == 0x82 ? 1 : op == 0x83 ? 2 : 4)
                        + " (a global from the copyreg extension registry) is not allowed");
                case 'P' -> throw fail("opcode PERSID (a text persistent id) is not allowed; torch.save writes "
                        + "BINPERSID");
                default -> throw fail("opcode " + opName(op) + " is not supported (torch.save does not write it)");
            }
        }
    }

    // ---- globals, persistent ids, REDUCE, BUILD: the only places anything is "evaluated"

    private Global global(String module, String name) {
        String q = module + "." + name;
        StorageType storage = STORAGES.get(q);
        if (storage != null || CALLABLES.contains(q)) {
            return new Global(module, name, storage);
        }
        if (module.equals("torch") && name.endsWith("Storage")) {
            throw fail("storage type '" + printable(q) + "' is not supported (supported: "
                    + String.join(", ", STORAGES.keySet().stream().sorted().toList()) + ")");
        }
        throw fail("global '" + printable(q) + "' " + NOT_ALLOWED);
    }

    private StorageRef persistentId(Object pid) {
        if (!(pid instanceof Tuple t) || t.items.size() != 5 || !"storage".equals(t.items.get(0))) {
            throw fail("persistent id must be a tuple ('storage', storage type, key, location, numel), found "
                    + describe(pid));
        }
        List<Object> p = t.items;
        if (!(p.get(1) instanceof Global g) || g.storage == null) {
            throw fail("persistent id storage type must be a torch storage type such as torch.FloatStorage, found "
                    + describe(p.get(1)));
        }
        if (!(p.get(2) instanceof String key) || !(p.get(3) instanceof String location)
                || !(p.get(4) instanceof Long numel)) {
            throw fail("persistent id must be ('storage', " + g.qualified() + ", str key, str location, int numel), "
                    + "found (" + typeName(p.get(2)) + ", " + typeName(p.get(3)) + ", " + typeName(p.get(4)) + ")");
        }
        if (numel < 0) {
            throw fail("storage '" + printable(key) + "' has numel " + numel + ", expected >= 0");
        }
        if (key.isEmpty() || key.contains("/") || key.contains("\\") || key.equals(".") || key.equals("..")) {
            throw fail("storage key '" + printable(key) + "' is not a plain record name");
        }
        StorageRef ref = new StorageRef(key, g.storage, location, numel);
        StorageRef seen = storages.putIfAbsent(key, ref);
        if (seen != null && (seen.type() != ref.type() || seen.numel() != ref.numel())) {
            throw fail("storage '" + printable(key) + "' is named as " + seen.type().className + " of "
                    + seen.numel() + " elements and as " + ref.type().className + " of " + ref.numel());
        }
        return seen != null ? seen : ref;
    }

    private Object reduce(Object callable, Object args) {
        if (!(callable instanceof Global g)) {
            throw fail("REDUCE of a " + typeName(callable) + " is not allowed (only OrderedDict() and torch's "
                    + "tensor rebuild functions are called)");
        }
        if (!(args instanceof Tuple t)) {
            throw fail("REDUCE of '" + g.qualified() + "' needs a tuple of arguments, found " + typeName(args));
        }
        List<Object> a = t.items;
        switch (g.qualified()) {
            case ORDERED_DICT -> {
                if (!a.isEmpty()) {
                    throw fail("OrderedDict is called with " + a.size() + " arguments, expected none");
                }
                return new PickleDict(true);
            }
            case REBUILD_V2 -> {
                if (a.size() != 6 && a.size() != 7) {
                    throw fail(g.name + " takes (storage, offset, size, stride, requires_grad, backward_hooks"
                            + "[, metadata]), found " + a.size() + " arguments");
                }
                TensorRef tensor = tensor(g.name, a);
                if (!(a.get(4) instanceof Boolean)) {
                    throw fail(g.name + " requires_grad must be a bool, found " + typeName(a.get(4)));
                }
                checkNoHooks(g.name, a.get(5));
                if (a.size() == 7 && a.get(6) != null
                        && !(a.get(6) instanceof PickleDict md && md.items.isEmpty())) {
                    throw fail(g.name + " tensor metadata (conj/neg bits) is not supported, found "
                            + describe(a.get(6)));
                }
                return tensor;
            }
            case REBUILD -> {
                if (a.size() != 4) {
                    throw fail(g.name + " takes (storage, offset, size, stride), found " + a.size() + " arguments");
                }
                return tensor(g.name, a);
            }
            case REBUILD_PARAMETER -> {
                if (a.size() != 3 || !(a.get(0) instanceof TensorRef tensor) || !(a.get(1) instanceof Boolean)) {
                    throw fail(g.name + " takes (tensor, requires_grad, backward_hooks), found " + describe(args));
                }
                checkNoHooks(g.name, a.get(2));
                return tensor;
            }
            default -> throw fail("REDUCE of '" + g.qualified() + "' is not allowed (only OrderedDict() and torch's "
                    + "tensor rebuild functions are called)");
        }
    }

    private TensorRef tensor(String fn, List<Object> a) {
        if (!(a.get(0) instanceof StorageRef storage)) {
            throw fail(fn + " needs a storage (a persistent id) as its first argument, found " + describe(a.get(0)));
        }
        if (!(a.get(1) instanceof Long offset) || offset < 0) {
            throw fail(fn + " storage offset must be an int >= 0, found " + describe(a.get(1)));
        }
        long[] size = ints(fn, "size", a.get(2));
        long[] stride = ints(fn, "stride", a.get(3));
        if (size.length != stride.length) {
            throw fail(fn + " has " + size.length + " sizes but " + stride.length + " strides");
        }
        return new TensorRef(storage, offset, size, stride);
    }

    private long[] ints(String fn, String what, Object value) {
        if (!(value instanceof Tuple t) || t.items.size() > 64) {
            throw fail(fn + " " + what + " must be a tuple of at most 64 ints, found " + describe(value));
        }
        long[] out = new long[t.items.size()];
        for (int i = 0; i < out.length; i++) {
            if (!(t.items.get(i) instanceof Long v) || v < 0) {
                throw fail(fn + " " + what + " must hold ints >= 0, found " + describe(t.items.get(i)) + " at "
                        + i);
            }
            out[i] = v;
        }
        return out;
    }

    private void checkNoHooks(String fn, Object hooks) {
        if (!(hooks instanceof PickleDict d) || !d.items.isEmpty()) {
            throw fail(fn + " backward_hooks must be an empty OrderedDict, found " + describe(hooks));
        }
    }

    private void build(Object target, Object state) {
        // torch.nn.Module.state_dict() returns an OrderedDict carrying a '_metadata' attribute; its pickle sets
        // that attribute with BUILD. The attribute is not a tensor, so it is checked for shape and dropped.
        if (target instanceof PickleDict d && d.ordered && (state instanceof PickleDict || state == null)) {
            return;
        }
        throw fail("BUILD on a " + typeName(target) + " with a " + typeName(state) + " is not allowed (only "
                + "an OrderedDict's attribute dict)");
    }

    // ---- stack, memo and input helpers

    private void push(Object v) {
        checkRoom();
        stack.add(v);
    }

    private void checkRoom() {
        if (stack.size() + marks.size() >= limits.maxStack()) {
            throw fail("stack holds more than " + limits.maxStack() + " items");
        }
    }

    private Object pop(String op) {
        int floor = marks.isEmpty() ? 0 : marks.get(marks.size() - 1);
        if (stack.size() <= floor) {
            throw fail(op + " needs an item but the stack is empty" + (marks.isEmpty() ? "" : " above the mark"));
        }
        return stack.remove(stack.size() - 1);
    }

    private Object peek(String op) {
        int floor = marks.isEmpty() ? 0 : marks.get(marks.size() - 1);
        if (stack.size() <= floor) {
            throw fail(op + " needs an item but the stack is empty");
        }
        return stack.get(stack.size() - 1);
    }

    private List<Object> popMark(String op) {
        if (marks.isEmpty()) {
            throw fail(op + " needs a MARK but there is none");
        }
        int at = marks.remove(marks.size() - 1);
        List<Object> tail = stack.subList(at, stack.size());
        List<Object> items = new ArrayList<>(tail);
        tail.clear();
        return items;
    }

    private Tuple tuple(int n) {
        Object[] items = new Object[n];
        for (int i = n - 1; i >= 0; i--) {
            items[i] = pop("TUPLE" + n);
        }
        List<Object> list = new ArrayList<>(n);
        Collections.addAll(list, items);
        return new Tuple(counted(list));
    }

    private PickleList list(String op) {
        Object top = peek(op);
        if (!(top instanceof PickleList l)) {
            throw fail(op + " needs a list, found " + typeName(top));
        }
        return l;
    }

    private PickleDict dict(String op) {
        Object top = peek(op);
        if (!(top instanceof PickleDict d)) {
            throw fail(op + " needs a dict, found " + typeName(top));
        }
        return d;
    }

    /** Puts key/value pairs (keys at even positions), refusing keys that are not str, int, bool or None. */
    private void putPairs(PickleDict dict, List<Object> pairs) {
        if (pairs.size() % 2 != 0) {
            throw fail("dict items come in pairs, found " + pairs.size() + " items");
        }
        for (int i = 0; i < pairs.size(); i += 2) {
            Object k = pairs.get(i);
            if (k != null && !(k instanceof String) && !(k instanceof Long) && !(k instanceof Boolean)) {
                throw fail("dict key of type " + typeName(k) + " is not supported (expected str or int)");
            }
            dict.items.put(k, pairs.get(i + 1));
        }
        counted(pairs.subList(0, pairs.size() / 2));
    }

    /** Counts items going into a container against {@link Limits#maxItems()}; returns them. */
    private List<Object> counted(List<Object> added) {
        items += added.size();
        if (items > limits.maxItems()) {
            throw fail("containers hold more than " + limits.maxItems() + " items in all");
        }
        return added;
    }

    private void memoPut(long index) {
        if (!memo.containsKey(index) && memo.size() >= limits.maxMemo()) {
            throw fail("memo holds more than " + limits.maxMemo() + " entries");
        }
        memo.put(index, peek("PUT"));
    }

    private Object memoGet(long index) {
        if (!memo.containsKey(index)) {
            throw fail("GET of memo entry " + index + " that was never stored");
        }
        return memo.get(index);
    }

    private ByteBuffer need(int n, String op) {
        if (in.remaining() < n) {
            throw fail(op + " needs " + n + " bytes but " + in.remaining() + " are left (truncated)");
        }
        ByteBuffer slice = in.slice(in.position(), n).order(ByteOrder.LITTLE_ENDIAN);
        in.position(in.position() + n);
        return slice;
    }

    private int u8(String op) {
        return need(1, op).get() & 0xFF;
    }

    private long in8(String op) {
        return need(8, op).getLong();
    }

    private long long1() {
        int n = u8("LONG1");
        if (n > 8) {
            throw fail("LONG1 integer of " + n + " bytes does not fit in 64 bits");
        }
        ByteBuffer b = need(n, "LONG1");
        long v = 0;
        for (int i = 0; i < n; i++) {
            v |= (b.get(i) & 0xFFL) << (8 * i);
        }
        if (n > 0 && n < 8 && (b.get(n - 1) & 0x80) != 0) {
            v |= -1L << (8 * n); // sign extension
        }
        return v;
    }

    private String string(long length, String op) {
        if (length < 0 || length > in.remaining()) {
            throw fail(op + " length " + Long.toUnsignedString(length) + " exceeds the " + in.remaining()
                    + " bytes left (truncated or oversized)");
        }
        if (length > limits.maxStringBytes()) {
            throw fail(op + " length " + length + " exceeds the limit of " + limits.maxStringBytes() + " bytes");
        }
        ByteBuffer b = need((int) length, op);
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(b).toString();
        } catch (CharacterCodingException e) {
            throw fail(op + " string is not valid UTF-8");
        }
    }

    /** A GLOBAL/INST argument: bytes up to a newline, at most 256 of them. */
    private String line(String op) {
        int start = in.position();
        int limit = Math.min(in.limit(), start + 257);
        for (int i = start; i < limit; i++) {
            if (in.get(i) == '\n') {
                byte[] bytes = new byte[i - start];
                in.get(bytes);
                in.get(); // the newline
                return new String(bytes, StandardCharsets.UTF_8);
            }
        }
        throw fail(op + " name has no newline within 256 bytes" + (limit == in.limit() ? " (truncated)" : ""));
    }

    private PeftException fail(String message) {
        return new PeftException(where + " offset " + opStart + ": " + message);
    }

    // ---- messages (never recursive)

    static String typeName(Object v) {
        if (v == null) {
            return "None";
        } else if (v instanceof String) {
            return "str";
        } else if (v instanceof Long) {
            return "int";
        } else if (v instanceof Double) {
            return "float";
        } else if (v instanceof Boolean) {
            return "bool";
        } else if (v instanceof Tuple t) {
            return "tuple of " + t.items.size();
        } else if (v instanceof PickleList l) {
            return "list of " + l.items.size();
        } else if (v instanceof PickleDict d) {
            return (d.ordered ? "OrderedDict of " : "dict of ") + d.items.size();
        } else if (v instanceof Global g) {
            return "global '" + g.qualified() + "'";
        } else if (v instanceof StorageRef s) {
            return "storage '" + printable(s.key()) + "'";
        } else if (v instanceof TensorRef) {
            return "tensor";
        }
        return v.getClass().getSimpleName();
    }

    /** The type and, for scalars and strings, the value (shortened). */
    static String describe(Object v) {
        if (v instanceof String s) {
            return "str '" + printable(s) + "'";
        } else if (v instanceof Long || v instanceof Double || v instanceof Boolean) {
            return typeName(v) + " " + v;
        }
        return typeName(v);
    }

    /** Makes a name from the file safe for a one-line message: control characters escaped, long names cut. */
    static String printable(String s) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < s.length() && b.length() < 120; i++) {
            char c = s.charAt(i);
            if (c < 0x20 || c == 0x7f) {
                b.append(String.format("\\x%02x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.length() < s.length() ? b.append("...").toString() : b.toString();
    }

    private static String opName(int op) {
        String name = switch (op) {
            case 'I' -> "INT";
            case 'L' -> "LONG";
            case 0x8b -> "LONG4";
            case 'F' -> "FLOAT";
            case 'S' -> "STRING";
            case 'T' -> "BINSTRING";
            case 'U' -> "SHORT_BINSTRING";
            case 'V' -> "UNICODE";
            case 'B' -> "BINBYTES";
            case 'C' -> "SHORT_BINBYTES";
            case 0x8e -> "BINBYTES8";
            case 0x96 -> "BYTEARRAY8";
            case 0x97 -> "NEXT_BUFFER";
            case 0x98 -> "READONLY_BUFFER";
            case 0x8f -> "EMPTY_SET";
            case 0x90 -> "ADDITEMS";
            case 0x91 -> "FROZENSET";
            case '2' -> "DUP";
            case '1' -> "POP_MARK";
            case 'g' -> "GET";
            case 'p' -> "PUT";
            default -> null;
        };
        String hex = String.format("0x%02x", op);
        return name == null ? hex : name + " (" + hex + ")";
    }
}
