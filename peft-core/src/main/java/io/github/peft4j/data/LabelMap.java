package io.github.peft4j.data;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.TreeSet;

/** Class labels (strings) ↔ ids 0..n-1, in a fixed order; written to a model's {@code id2label}. */
public final class LabelMap {
    private final List<String> labels;
    private final Map<String, Integer> ids = new HashMap<>();

    /**
     * @param labels the labels in id order, distinct, at least one
     */
    public LabelMap(List<String> labels) {
        if (labels.isEmpty()) {
            throw new IllegalArgumentException("a label map needs at least one label");
        }
        this.labels = List.copyOf(labels);
        for (int i = 0; i < labels.size(); i++) {
            if (ids.put(labels.get(i), i) != null) {
                throw new IllegalArgumentException("label \"" + labels.get(i) + "\" appears twice in " + labels);
            }
        }
    }

    /**
     * A map over a set of labels in sorted order: numerically when every label is an integer (so labels
     * {@code 0, 1, 2, ..., 10} keep their ids), else by string ({@code "B-LOC" < "I-LOC" < "O"}).
     *
     * @param labels the labels seen (duplicates allowed)
     * @return the map
     */
    public static LabelMap sorted(Collection<String> labels) {
        boolean numeric = !labels.isEmpty() && labels.stream().allMatch(s -> s.matches("-?\\d{1,9}"));
        Comparator<String> order = numeric ? Comparator.comparingInt(Integer::parseInt) : Comparator.naturalOrder();
        TreeSet<String> set = new TreeSet<>(order);
        set.addAll(labels);
        return new LabelMap(new ArrayList<>(set));
    }

    /**
     * @param label a label
     * @return its id, or empty when the map does not know it
     */
    public OptionalInt id(String label) {
        Integer id = ids.get(label);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /**
     * @param id an id in 0..size-1
     * @return its label
     */
    public String label(int id) {
        return labels.get(id);
    }

    /** @return the number of labels */
    public int size() {
        return labels.size();
    }

    /** @return the labels in id order */
    public List<String> labels() {
        return labels;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LabelMap m && labels.equals(m.labels);
    }

    @Override
    public int hashCode() {
        return labels.hashCode();
    }

    @Override
    public String toString() {
        return "LabelMap" + labels;
    }
}
