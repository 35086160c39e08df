package io.github.peft4j.model;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;

/**
 * Where the weights of a task head come from when the model directory lacks them: for instance the
 * {@code modules_to_save} copies an adapter saved (its classifier and pooler), so that a bare encoder checkpoint
 * takes the head the adapter was trained with instead of a random one. Used by
 * {@link Models#load(java.nio.file.Path, HfConfig, ai.djl.Device, DataType, TaskType, HeadSource)}.
 */
public interface HeadSource {
    /**
     * @param name a model weight name, e.g. {@code classifier.weight}
     * @return the shape of the tensor this source holds for it, or null when it holds none
     */
    long[] shape(String name);

    /**
     * @param name a model weight name for which {@link #shape} is not null
     * @param manager owns the result
     * @param dtype the compute dtype
     * @return the tensor
     */
    NDArray load(String name, NDManager manager, DataType dtype);

    /**
     * @param name a model weight name
     * @return where its tensor is, for messages (file and tensor name)
     */
    String describe(String name);
}
