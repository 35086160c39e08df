package io.github.peft4j.adapters.bottleneck;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.github.peft4j.model.HookSite;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * AdapterHub's NICE invertible adapter ({@code inv_adapter: "nice"}, {@code methods/modeling.py}
 * {@code NICECouplingBlock}) on the embedding output: with {@code x = [x1 | x2]} split at {@code C // 2},
 * {@code y1 = x1 + F(x2)}, {@code y2 = x2 + G(y1)}, where F and G are {@code Linear(in, int(in // r)) -> act ->
 * Linear(int(in // r), out)} (parameters {@code F.0.weight}, {@code F.2.bias}, ..., initialised N(0, 0.02) with zero
 * biases). The inverse pass runs in AdapterHub only in front of its flexible language-modelling heads; with the static
 * heads of {@code adapters.init(model)} (what peft4j's models correspond to) no inverse is applied, and none is here.
 */
final class NiceBlock {
    private final HookSite site;
    private final int split1;
    private final String act;
    /** local name to parameter, in AdapterHub's order */
    final Map<String, Param> params = new LinkedHashMap<>();

    NiceBlock(HookSite site, int channels, double reduction, String act, NDManager m) {
        this.site = site;
        this.act = act;
        this.split1 = channels / 2;
        int split2 = channels - split1;
        subnet("F", split2, split1, reduction, m);
        subnet("G", split1, split2, reduction, m);
    }

    private void subnet(String name, int in, int out, double reduction, NDManager m) {
        int mid = (int) Math.floor(in / reduction);
        params.put(name + ".0.weight", new Param(m.randomNormal(0f, 0.02f, new Shape(mid, in), DataType.FLOAT32)));
        params.put(name + ".0.bias", new Param(m.zeros(new Shape(mid), DataType.FLOAT32)));
        params.put(name + ".2.weight", new Param(m.randomNormal(0f, 0.02f, new Shape(out, mid), DataType.FLOAT32)));
        params.put(name + ".2.bias", new Param(m.zeros(new Shape(out), DataType.FLOAT32)));
    }

    HookSite site() {
        return site;
    }

    private NDArray p(String name, DataType dt) {
        return Ops.cast(params.get(name).array(), dt);
    }

    private NDArray net(String name, NDArray x) {
        DataType dt = x.getDataType();
        NDArray h = BottleneckBlock.activate(act, Ops.linear(x, p(name + ".0.weight", dt), p(name + ".0.bias", dt)));
        return Ops.linear(h, p(name + ".2.weight", dt), p(name + ".2.bias", dt));
    }

    /**
     * @param x the embedding output {@code [B, S, C]}
     * @return the coupling's forward pass {@code [B, S, C]}
     */
    NDArray apply(NDArray x) {
        NDArray x1 = x.get(new NDIndex("..., :{}", split1));
        NDArray x2 = x.get(new NDIndex("..., {}:", split1));
        NDArray y1 = x1.add(net("F", x2));
        NDArray y2 = x2.add(net("G", y1));
        return y1.concat(y2, -1);
    }
}
