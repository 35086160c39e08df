package io.github.peft4j.nn.quant;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.ndarray.NDScope;
import io.github.peft4j.nn.Module;
import io.github.peft4j.nn.Ops;
import io.github.peft4j.nn.Param;
import io.github.peft4j.nn.Projection;
import io.github.peft4j.nn.RecomputeTape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * A 4-bit quantised linear layer, bitsandbytes' {@code Linear4bit}: {@code y = x W^T + b} with {@code W (out, in)}
 * kept packed (two NF4/FP4 codes a byte, an absmax per block, optionally double-quantised). Forward dequantises
 * {@code W} into the input's dtype on the weights' device (a gather over a 256-entry byte to code-pair table, times
 * the block absmax, in fp32 as bitsandbytes) and drops the copy right after the product. It holds no dense weights
 * ({@link #dense()} is null): LoRA wraps it, and merges into it by dequantising, adding and {@link #requantize
 * requantising}, as HF PEFT.
 *
 * <p>Its parameters carry the names transformers gives them in a bnb-4bit checkpoint: {@code weight} (uint8
 * {@code [(n+1)/2, 1]}), {@code weight.absmax} (fp32, or uint8 with double quantisation), {@code weight.quant_map},
 * {@code weight.nested_absmax} and {@code weight.nested_quant_map} (double quantisation only),
 * {@code weight.quant_state.bitsandbytes__<type>} (the JSON quant state as bytes) and {@code bias}. All are frozen.
 */
public final class Linear4bit extends Module implements Projection {
    /** The local name of the JSON quant state for a type: {@code weight.quant_state.bitsandbytes__nf4}. */
    public static String quantStateKey(FourBitType type) {
        return "weight.quant_state.bitsandbytes__" + type.bnbName();
    }

    private final FourBitType type;
    private final int blocksize;
    private final long out;
    private final long in;
    private final String dtypeName;
    private final Param packed;
    private final Param absmax;
    private final Param nestedAbsmax;
    private final Param bias;
    private final NDArray pairTable; // [256, 2] fp32: code[b >> 4], code[b & 15]
    private final NDArray dynamicTable; // [256, 1] fp32, double quantisation only
    private final Param quantState;
    private float offset;
    private NDArray offsetScalar;

    /**
     * Creates the layer over arrays in bitsandbytes' layout (as loaded from a checkpoint), taking ownership of them.
     *
     * @param type NF4 or FP4
     * @param blocksize values per block
     * @param out output features
     * @param in input features
     * @param packed uint8 {@code [(out*in+1)/2, 1]}
     * @param absmax fp32 {@code [blocks]}, or uint8 {@code [blocks]} with double quantisation
     * @param nestedAbsmax fp32 {@code [ceil(blocks/256)]} with double quantisation, else null
     * @param offset the double quantisation's offset (0 without)
     * @param bias {@code (out)} or null
     * @param dtypeName the original weight's dtype as bitsandbytes names it ({@code float32}), for the quant state
     */
    public Linear4bit(FourBitType type, int blocksize, long out, long in, NDArray packed, NDArray absmax,
            NDArray nestedAbsmax, float offset, NDArray bias, String dtypeName) {
        FourBitQuantizer.checkBlocksize(blocksize);
        long n = out * in;
        long blocks = (n + blocksize - 1) / blocksize;
        boolean dq = nestedAbsmax != null;
        check(packed, DataType.UINT8, new Shape((n + 1) / 2, 1), "weight");
        check(absmax, dq ? DataType.UINT8 : DataType.FLOAT32, new Shape(blocks), "weight.absmax");
        if (dq) {
            check(nestedAbsmax, DataType.FLOAT32, new Shape((blocks + FourBitQuantizer.NESTED_BLOCKSIZE - 1)
                    / FourBitQuantizer.NESTED_BLOCKSIZE), "weight.nested_absmax");
        }
        this.type = type;
        this.blocksize = blocksize;
        this.out = out;
        this.in = in;
        this.offset = offset;
        this.dtypeName = dtypeName;
        NDManager m = packed.getManager();
        // counted as HF PEFT counts a Params4bit (two values a byte); the quantisation state counts 0
        this.packed = register("weight", new Param(packed, 2 * packed.getShape().size()));
        this.absmax = register("weight.absmax", new Param(absmax, 0));
        register("weight.quant_map", new Param(Ops.owned(m, type.code(), new Shape(16)), 0));
        this.nestedAbsmax = dq ? register("weight.nested_absmax", new Param(nestedAbsmax, 0)) : null;
        if (dq) {
            register("weight.nested_quant_map", new Param(Ops.owned(m, DynamicMap.values(), new Shape(256)), 0));
        }
        byte[] json = quantStateJson(dtypeName).getBytes(StandardCharsets.UTF_8);
        this.quantState = register(quantStateKey(type), new Param(bytes(m, json, new Shape(json.length)), 0));
        this.bias = bias == null ? null : register("bias", new Param(bias));
        float[] code = type.code();
        float[] pairs = new float[512];
        for (int b = 0; b < 256; b++) {
            pairs[2 * b] = code[b >>> 4];
            pairs[2 * b + 1] = code[b & 0xF];
        }
        this.pairTable = Ops.owned(m, pairs, new Shape(256, 2));
        this.dynamicTable = dq ? Ops.owned(m, DynamicMap.values(), new Shape(256, 1)) : null;
        this.offsetScalar = Ops.scalar(packed.getDevice(), DataType.FLOAT32, offset);
    }

    /**
     * Creates the layer from host data (a weight quantised by {@link FourBitQuantizer}).
     *
     * @param w the quantised {@code (out, in)} weight
     * @param bias {@code (out)} or null (taken over)
     * @param manager owns the arrays (and decides their device)
     * @param dtypeName the original weight's dtype as bitsandbytes names it
     * @return the layer
     */
    public static Linear4bit of(FourBitWeights w, NDArray bias, NDManager manager, String dtypeName) {
        long[] s = w.shape();
        if (s.length != 2) {
            throw new IllegalArgumentException("a 4-bit linear weight must be 2-d (out, in), got shape "
                    + java.util.Arrays.toString(s));
        }
        NDArray packed = bytes(manager, w.packed(), new Shape(w.packed().length, 1));
        NDArray absmax = w.doubleQuant() ? bytes(manager, w.absmax8(), new Shape(w.blocks()))
                : Ops.owned(manager, w.absmax(), new Shape(w.blocks()));
        NDArray nested = w.doubleQuant() ? Ops.owned(manager, w.nestedAbsmax(), new Shape(w.nestedAbsmax().length)) : null;
        return new Linear4bit(w.type(), w.blocksize(), s[0], s[1], packed, absmax, nested, w.offset(), bias, dtypeName);
    }

    /**
     * Replaces the weight by the quantisation of new values with the same code, block size and double quantisation,
     * as HF PEFT's merge into a bitsandbytes {@code Linear4bit} does ({@code Params4bit(merged, **weight.__dict__)}):
     * the stored weight then differs from the given values by the quantisation error.
     *
     * @param weight the new {@code (out, in)} values, any float dtype, any device (not changed)
     */
    public void requantize(NDArray weight) {
        if (!weight.getShape().equals(new Shape(out, in))) {
            throw new IllegalArgumentException("requantize: expected a (" + out + ", " + in + ") weight, got "
                    + weight.getShape());
        }
        float[] v;
        try (NDArray f32 = weight.toType(DataType.FLOAT32, false)) {
            v = f32.toFloatArray();
        }
        FourBitWeights w = FourBitQuantizer.quantize(v, new long[] {out, in}, type, blocksize, doubleQuant());
        NDManager m = manager();
        packed.set(bytes(m, w.packed(), packed.shape()));
        if (w.doubleQuant()) {
            absmax.set(bytes(m, w.absmax8(), absmax.shape()));
            nestedAbsmax.set(Ops.owned(m, w.nestedAbsmax(), nestedAbsmax.shape()));
        } else {
            absmax.set(Ops.owned(m, w.absmax(), absmax.shape()));
        }
        offset = w.offset();
        offsetScalar = Ops.scalar(packed.array().getDevice(), DataType.FLOAT32, offset); // cached: never closed
        byte[] json = quantStateJson(dtypeName).getBytes(StandardCharsets.UTF_8);
        quantState.set(bytes(m, json, new Shape(json.length)));
    }

    private String quantStateJson(String dtypeName) {
        StringBuilder sb = new StringBuilder();
        sb.append("{\"quant_type\": \"").append(type.bnbName()).append("\", \"blocksize\": ").append(blocksize)
                .append(", \"dtype\": \"").append(dtypeName).append("\", \"shape\": [").append(out).append(", ")
                .append(in).append(']');
        if (nestedAbsmax != null || offset != 0f) {
            sb.append(", \"nested_blocksize\": ").append(FourBitQuantizer.NESTED_BLOCKSIZE)
                    .append(", \"nested_dtype\": \"float32\", \"nested_offset\": ").append(Double.toString(offset));
        }
        return sb.append('}').toString();
    }

    private static void check(NDArray a, DataType dtype, Shape shape, String name) {
        if (a == null || a.getDataType() != dtype || !a.getShape().equals(shape)) {
            throw new io.github.peft4j.PeftException("4-bit tensor '" + name + "': expected " + dtype + " " + shape
                    + ", got " + (a == null ? "none" : a.getDataType() + " " + a.getShape()));
        }
    }

    /** A libtorch-owned uint8 array holding a copy of {@code data}. */
    static NDArray bytes(NDManager manager, byte[] data, Shape shape) {
        ByteBuffer buf = ByteBuffer.allocateDirect(data.length).order(ByteOrder.nativeOrder());
        buf.put(data).flip();
        try (NDArray view = manager.create(buf, shape, DataType.UINT8)) {
            return view.duplicate();
        }
    }

    /**
     * The fp32 absmax of every block, on the weights' device: as stored, or {@code DYN[q] * nested[k/256] + offset}.
     *
     * @return {@code [blocks]}
     */
    public NDArray blockAbsmax() {
        NDArray a = absmax.array();
        if (nestedAbsmax == null) {
            return a.duplicate();
        }
        try (NDScope scope = new NDScope()) {
            NDArray r = reconstructAbsmax();
            NDScope.unregister(r);
            return r;
        }
    }

    /** The double-quantised absmax reconstructed (arrays registered in the caller's scope). */
    private NDArray reconstructAbsmax() {
        NDArray a = absmax.array();
        long blocks = a.getShape().get(0);
        NDArray dyn = lookup(a, dynamicTable).reshape(blocks);
        NDArray nested = nestedAbsmax.array().repeat(0, FourBitQuantizer.NESTED_BLOCKSIZE).get("0:" + blocks);
        return dyn.mul(nested).add(offsetScalar);
    }

    /**
     * Dequantises the weight on its device, as bitsandbytes' {@code dequantize_4bit} (fp32 {@code code[q] * absmax}).
     *
     * @return a new fp32 {@code (out, in)} array; the caller closes it
     */
    public NDArray dequantize() {
        return dequantize(DataType.FLOAT32);
    }

    /**
     * Dequantises into a compute dtype: fp32 {@code code[q] * absmax}, as bitsandbytes, then rounded to {@code dtype}.
     * The int32 code indices are closed once the codes exist and the codes are scaled in place, so at most one and a
     * half weight-sized arrays exist at a time (two while casting to another dtype).
     *
     * @param dtype the compute dtype
     * @return a new {@code (out, in)} array in {@code dtype}, in no {@link NDScope}; the caller closes it
     */
    public NDArray dequantize(DataType dtype) {
        long n = out * in;
        long blocks = absmax.shape().get(0);
        NDArray w;
        try (NDScope scope = new NDScope()) {
            NDArray scale = nestedAbsmax == null ? absmax.array() : reconstructAbsmax(); // [blocks] fp32
            NDArray codes;
            try (NDArray idx = packed.array().reshape(-1).toType(DataType.INT32, false)) {
                codes = ai.djl.nn.core.Embedding.embedding(idx, pairTable, SparseFormat.DENSE).head().reshape(-1);
            }
            if (codes.getShape().get(0) == blocks * blocksize) { // whole blocks: scale by broadcasting
                w = codes.reshape(blocks, blocksize);
                codes.close();
                w.muli(scale.reshape(blocks, 1)); // in place: the codes are a temporary of our own

            } else { // a partial last block (or an odd count): one absmax per value
                try (NDArray c = codes.get("0:" + n); NDArray per = scale.repeat(0, blocksize).get("0:" + n)) {
                    w = c.mul(per);
                }
                codes.close();
            }
            w = w.reshape(out, in);
            if (dtype != DataType.FLOAT32) {
                try (NDArray f32 = w) {
                    w = f32.toType(dtype, false);
                }
            }
            NDScope.unregister(w);
        }
        return w;
    }

    /** {@code table[index]} along the first axis for uint8 indices. */
    private static NDArray lookup(NDArray uint8, NDArray table) {
        NDArray idx = uint8.toType(DataType.INT64, false);
        return ai.djl.nn.core.Embedding.embedding(idx, table, SparseFormat.DENSE).head();
    }

    /**
     * {@inheritDoc} The weight is dequantised into the input's dtype for this call and its handle closed right after
     * the product. Without recording (a checkpointed block's forward pass) it is freed at once. Under recording with a
     * {@link RecomputeTape} open (a training step without gradient checkpointing) the product is computed without
     * recording and the tape recomputes the input's gradient in backward ({@code dL/dy · W}, the weight dequantised
     * again), so autograd never keeps the dense weight, as bitsandbytes' {@code MatMul4Bit}; otherwise autograd keeps
     * it for the input's gradient until backward has used it. The bias is cast and added on the gradient path.
     */
    @Override
    public NDArray forward(NDArray x) {
        DataType dt = x.getDataType();
        NDArray b = bias == null ? null : Ops.cast(bias.array(), dt);
        RecomputeTape tape = RecomputeTape.active();
        if (tape == null) {
            try (NDArray w = dequantize(dt)) {
                return ai.djl.nn.core.Linear.linear(x, w, b).head();
            }
        }
        return tape.linear(x, this::dequantize, true, b);
    }

    /** {@inheritDoc} With a {@link RecomputeTape} active, the tape's shared leaf for the input. */
    @Override
    public NDArray sharedInput(NDArray x) {
        RecomputeTape tape = RecomputeTape.active();
        return tape == null ? x : tape.input(x);
    }

    /** @return the weight back on the host, as {@link FourBitQuantizer} produces it */
    public FourBitWeights toHost() {
        byte[] p = packed.array().toByteArray();
        if (nestedAbsmax == null) {
            return new FourBitWeights(type, blocksize, new long[] {out, in}, p, absmax.array().toFloatArray(), null, null, 0f);
        }
        return new FourBitWeights(type, blocksize, new long[] {out, in}, p, null, absmax.array().toByteArray(),
                nestedAbsmax.array().toFloatArray(), offset);
    }

    /** @return NF4 or FP4 */
    public FourBitType type() {
        return type;
    }

    /** @return values per block */
    public int blocksize() {
        return blocksize;
    }

    /** @return whether the absmax values are double-quantised */
    public boolean doubleQuant() {
        return nestedAbsmax != null;
    }

    /** @return the bias parameter, or null */
    public Param bias() {
        return bias;
    }

    /** @return the bytes of the packed codes, absmax and nested absmax held (not the shared code tables) */
    public long storageBytes() {
        long b = packed.shape().size() + absmax.shape().size() * absmax.array().getDataType().getNumOfBytes();
        if (nestedAbsmax != null) {
            b += 4 * nestedAbsmax.shape().size() + 4;
        }
        return b;
    }

    @Override
    public long inFeatures() {
        return in;
    }

    @Override
    public long outFeatures() {
        return out;
    }

    @Override
    public NDManager manager() {
        return packed.array().getManager();
    }
}
