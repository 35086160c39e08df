package io.github.peft4j.prompt.ptuning;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.core.Linear;
import java.util.List;

/**
 * A multi-layer bidirectional LSTM over one sequence, the computation of {@code torch.nn.LSTM(bidirectional=True,
 * batch_first=True)} on a batch of one, written with differentiable array ops (so gradients reach every weight
 * through DJL's autograd).
 *
 * <p>Per direction and layer, with torch's gate order (input, forget, cell, output) and its parameter shapes
 * {@code weight_ih (4h, in)}, {@code weight_hh (4h, h)}, {@code bias_ih (4h)}, {@code bias_hh (4h)}:
 * <pre>
 *   g = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          [1, 4h]
 *   i, f, c~, o = sigmoid(g0), sigmoid(g1), tanh(g2), sigmoid(g3)
 *   c_t = f * c_{t-1} + i * c~,   h_t = o * tanh(c_t)      h_0 = c_0 = 0
 * </pre>
 * The reverse direction runs from the last position to the first; a layer's output is {@code [h_fwd_t, h_rev_t]}
 * {@code [T, 2h]}, the next layer's input. Dropout (probability {@code p}, training only) applies to every layer's
 * output except the last, as torch does.
 */
final class Lstm {
    /** One direction of one layer: torch's {@code weight_ih_l{k}[_reverse]} etc. */
    record Direction(NDArray weightIh, NDArray weightHh, NDArray biasIh, NDArray biasHh) {}

    private Lstm() {}

    /**
     * @param x {@code [T, in]} the sequence
     * @param layers per layer the forward and the reverse direction
     * @param dropout the dropout probability between layers
     * @param training whether dropout is active
     * @return {@code [T, 2h]} the last layer's outputs
     */
    static NDArray forward(NDArray x, List<Direction[]> layers, float dropout, boolean training) {
        NDArray in = x;
        for (int l = 0; l < layers.size(); l++) {
            Direction[] d = layers.get(l);
            NDArray out = run(in, d[0], false).concat(run(in, d[1], true), 1); // [T, 2h]
            if (training && dropout > 0 && l < layers.size() - 1) {
                out = ai.djl.nn.norm.Dropout.dropout(out, dropout, true).head();
            }
            in = out;
        }
        return in;
    }

    /** One direction over the sequence: {@code [T, h]}, row t the hidden state after position t. */
    private static NDArray run(NDArray x, Direction d, boolean reverse) {
        long steps = x.getShape().get(0);
        long h = d.weightHh().getShape().get(1);
        NDArray inputPart = Linear.linear(x, d.weightIh(), d.biasIh()).head(); // [T, 4h]
        NDArray hPrev = x.getManager().zeros(new Shape(1, h), x.getDataType());
        NDArray cPrev = x.getManager().zeros(new Shape(1, h), x.getDataType());
        NDArray[] outs = new NDArray[(int) steps];
        for (long s = 0; s < steps; s++) {
            long t = reverse ? steps - 1 - s : s;
            NDArray gates = inputPart.get(new NDIndex(t + ":" + (t + 1)))
                    .add(Linear.linear(hPrev, d.weightHh(), d.biasHh()).head()); // [1, 4h]
            NDList g = gates.split(4, 1);
            NDArray i = Activation.sigmoid(g.get(0));
            NDArray f = Activation.sigmoid(g.get(1));
            NDArray cell = g.get(2).tanh();
            NDArray o = Activation.sigmoid(g.get(3));
            cPrev = f.mul(cPrev).add(i.mul(cell));
            hPrev = o.mul(cPrev.tanh());
            outs[(int) t] = hPrev;
        }
        return NDArrays.concat(new NDList(outs), 0);
    }
}
