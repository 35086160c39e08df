package io.github.peft4j.peft;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.CallContext;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;

/**
 * The rows of a mixed-adapter batch grouped by adapter (HF PEFT's {@code adapter_names=}): every layer of every
 * method computes each adapter's term on that adapter's rows only and puts the rows back in order, so one
 * forward pass serves several adapters. Built once per forward call by {@link AdapterState#rowGroups}.
 */
public final class RowGroups {
    private final List<String> rows;
    private final Map<String, int[]> groups = new LinkedHashMap<>();
    private final NDManager manager;
    private final Map<String, NDArray> indexArrays = new LinkedHashMap<>();

    RowGroups(List<String> rows, NDManager manager) {
        this.rows = rows;
        this.manager = manager;
        Map<String, List<Integer>> g = new LinkedHashMap<>();
        for (int r = 0; r < rows.size(); r++) {
            g.computeIfAbsent(rows.get(r), k -> new ArrayList<>()).add(r);
        }
        g.forEach((k, v) -> groups.put(k, v.stream().mapToInt(Integer::intValue).toArray()));
    }

    /** @return the adapter of each row ({@link CallContext#BASE} for the base model) */
    public List<String> rows() {
        return Collections.unmodifiableList(rows);
    }

    /** @return the distinct names, in order of their first row */
    public List<String> names() {
        return List.copyOf(groups.keySet());
    }

    /**
     * Computes a term per group and assembles it for the whole batch: rows of adapters that {@code term} has no
     * term for (it returns null: the base rows, or adapters this layer does not hold) get zeros.
     *
     * @param x the layer input {@code [B, ...]}
     * @param term adapter name and its rows of {@code x} to that adapter's term {@code [rows, ..., out]}, or null
     * @return the term for every row {@code [B, ..., out]}, or null when no group has one
     */
    public NDArray map(NDArray x, BiFunction<String, NDArray, NDArray> term) {
        List<NDArray> parts = new ArrayList<>();
        List<int[]> partRows = new ArrayList<>();
        List<Integer> zeroRows = new ArrayList<>();
        for (Map.Entry<String, int[]> e : groups.entrySet()) {
            NDArray t = term.apply(e.getKey(), x.get(index(e.getKey())));
            if (t == null) {
                for (int r : e.getValue()) {
                    zeroRows.add(r);
                }
            } else {
                parts.add(t);
                partRows.add(e.getValue());
            }
        }
        if (parts.isEmpty()) {
            return null;
        }
        if (!zeroRows.isEmpty()) {
            Shape s = parts.get(0).getShape();
            long[] dims = s.getShape().clone();
            dims[0] = zeroRows.size();
            parts.add(parts.get(0).getManager().zeros(new Shape(dims), parts.get(0).getDataType()));
            partRows.add(zeroRows.stream().mapToInt(Integer::intValue).toArray());
        }
        NDArray all = parts.size() == 1 ? parts.get(0) : concat(parts);
        // all holds the rows in group order; gather them back into batch order
        long[] inverse = new long[rows.size()];
        int at = 0;
        for (int[] rs : partRows) {
            for (int r : rs) {
                inverse[r] = at++;
            }
        }
        return all.get(owned(inverse));
    }

    /**
     * A per-row value: {@code value} gives each group's array of shape {@code [...]} (null for a group that keeps
     * {@code neutral}); the result stacks them per row: {@code [B, ...]}. For multiplicative methods (IA3).
     *
     * @param neutral the value for rows without one
     * @param value adapter name to its value, or null
     * @return {@code [B, ...]}, or null when no group has a value
     */
    public NDArray perRow(NDArray neutral, java.util.function.Function<String, NDArray> value) {
        List<NDArray> table = new ArrayList<>();
        table.add(neutral);
        long[] pick = new long[rows.size()];
        boolean any = false;
        for (Map.Entry<String, int[]> e : groups.entrySet()) {
            NDArray v = value.apply(e.getKey());
            int slot = 0;
            if (v != null) {
                table.add(v);
                slot = table.size() - 1;
                any = true;
            }
            for (int r : e.getValue()) {
                pick[r] = slot;
            }
        }
        if (!any) {
            return null;
        }
        NDArray stacked = ai.djl.ndarray.NDArrays.stack(new ai.djl.ndarray.NDList(table.toArray(new NDArray[0])));
        return stacked.get(owned(pick));
    }

    private static NDArray concat(List<NDArray> parts) {
        NDArray out = parts.get(0);
        for (int i = 1; i < parts.size(); i++) {
            out = out.concat(parts.get(i), 0);
        }
        return out;
    }

    private NDArray index(String name) {
        return indexArrays.computeIfAbsent(name, k -> owned(java.util.Arrays.stream(groups.get(k)).asLongStream().toArray()));
    }

    /** A libtorch-owned int64 array: autograd may keep index tensors until backward, after Java buffers are gone. */
    private NDArray owned(long[] values) {
        return io.github.peft4j.nn.Ops.owned(manager, values, new Shape(values.length));
    }
}
