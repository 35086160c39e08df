"""Seed inputs for the parser fuzz targets (io.github.peft4j.fuzz.ParserFuzzTest), written to
peft-examples/src/test/resources/io/github/peft4j/fuzz/ParserFuzzTestInputs/<target>/seed-*.

Run from the repository root with /work/V/bin/python (torch for the pickles). The ONNX seed is written by
FuzzSeeds (Java), as no onnx package is needed for it there. Crash inputs found by fuzzing go next to the seeds
(named crash-*), are kept, and are replayed by every test run.
"""
import io
import json
import os
import shutil
import struct
import zipfile

import torch

ROOT = "peft-examples/src/test/resources/io/github/peft4j/fuzz/ParserFuzzTestInputs"
FIX = "peft-core/src/test/resources/fixtures"
HUB = "peft-adapters/src/test/resources/fixtures/adapterhub"


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def safetensors(tensors, metadata=None):
    header, body = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + body


# safetensors: a real adapter, and small hand-made files covering each dtype, an empty tensor and metadata
put("safetensors", "lora_adapter", read(FIX + "/hf-peft/llama_lora/adapter/adapter_model.safetensors"))
put("safetensors", "dtypes", safetensors({
    "f32": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
    "f16": ("F16", [2], struct.pack("<2e", 1.5, -2)),
    "bf16": ("BF16", [2], b"\x80\x3f\x00\x40"),
    "i64": ("I64", [1], struct.pack("<q", 7)),
    "i32": ("I32", [1], struct.pack("<i", -7)),
    "i16": ("I16", [1], struct.pack("<h", -3)),
    "u8": ("U8", [3], b"abc"),
    "i8": ("I8", [1], b"\xff"),
    "bool": ("BOOL", [2], b"\x01\x00"),
    "empty": ("F32", [0, 3], b""),
}, {"format": "pt"}))

# torch.save zips: the valid fixtures and two hostile ones
for f in ["linear.bin", "views.bin", "param.bin"]:
    put("torchBin", f, read(FIX + "/torch-bin/valid/" + f))
for f in ["posix_system.bin", "truncated_pickle.bin"]:
    put("torchBin", f, read(FIX + "/torch-bin/hostile/" + f))


def pickle_of(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        return z.read(name)


# data.pkl bodies whose storages are 64 bytes, as the torchPickle target's records are
put("torchPickle", "floats", pickle_of({"a": torch.arange(16.0), "b": torch.arange(16.0).reshape(4, 4).t()}))
put("torchPickle", "mixed", pickle_of({"h": torch.zeros(32, dtype=torch.float16), "l": torch.ones(8, dtype=torch.int64),
                                       "p": torch.nn.Parameter(torch.ones(16))}))
put("torchPickle", "shared", pickle_of({"x": (lambda s: s)(torch.arange(16.0))[2:6], "y": torch.arange(16.0)[::4]}))
put("torchPickle", "posix_system", b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")

# model configs: the Llama whose weights the target loads, and the other families
put("modelConfig", "llama", read(FIX + "/hf-peft/llama_lora/base/config.json"))
put("modelConfig", "gpt2", read(FIX + "/hf-peft/gpt2_lora/base/config.json"))
put("modelConfig", "bert", read(FIX + "/hf-peft/bert_lora/base/config.json"))
put("modelConfig", "bnb", read(FIX + "/bnb/llama_nf4_dq/base/config.json"))

# a sharded index over the tiny Llama's one file (and one with a '..' shard name)
_b = read(FIX + "/hf-peft/llama_lora/base/model.safetensors")
_h = json.loads(_b[8:8 + struct.unpack("<Q", _b[:8])[0]])
_wm = {k: "model-00001-of-00001.safetensors" for k in _h if k != "__metadata__"}
put("shardIndex", "index", json.dumps({"metadata": {"total_size": 0}, "weight_map": _wm}, indent=2))
_bad = dict(_wm)
_bad[next(iter(_bad))] = "../model-00001-of-00001.safetensors"
put("shardIndex", "traversal", json.dumps({"metadata": {}, "weight_map": _bad}))

# adapter configs
put("adapterConfig", "lora", read(FIX + "/hf-peft/llama_lora/adapter/adapter_config.json"))
for case in ["llama_ia3", "llama_dora", "llama_adalora", "llama_prompt", "llama_prefix"]:
    p = FIX + "/hf-peft/" + case + "/adapter/adapter_config.json"
    if os.path.exists(p):
        put("adapterConfig", case, read(p))
for case in ["bert_seq_bn", "bert_par_bn", "bert_double_seq_bn", "bert_custom"]:
    put("adapterHubConfig", case, read(HUB + "/" + case + "/adapter/adapter_config.json"))

# data files (first byte: even = skip bad lines, odd = stop)
put("jsonLines", "classification", b"\x00" + b'{"text": "good movie", "label": "pos"}\n{"text": "bad", "label": 0}\n\n'
    + b'{"text": "", "label": "neg"}\nnot json\n')
put("jsonLines", "alpaca", b"\x01" + json.dumps([{"instruction": "Add", "input": "1 2", "output": "3"},
                                                 {"instruction": "Say hi", "output": "hi"}]).encode())
put("jsonLines", "chat", b"\x00" + b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
    + b'{"prompt": "a", "completion": "b"}\n')
put("csv", "plain", b"\x00text,label\ngood movie,pos\n\"bad, really\",neg\n\"multi\nline\",pos\n")
put("csv", "quotes", b"\x01label,text,extra\n1,\"he said \"\"hi\"\"\",x\n0,,y\n")

# tokenizers
put("tokenizerJson", "bpe", read(FIX + "/tokenizers/bpe/tokenizer.json"))
put("tokenizerJson", "wordpiece", read(FIX + "/tokenizers/wordpiece/tokenizer.json"))

# bnb quant state (the fixture's own, and a double-quantised one's)
def tensor_bytes(path, key):
    b = read(path)
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    s, e = h[key]["data_offsets"]
    return b[8 + n + s:8 + n + e]


key = "model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__nf4"
put("bnbQuantState", "nf4_dq", tensor_bytes(FIX + "/bnb/llama_nf4_dq/base/model.safetensors", key))

# server requests (first byte mod 4: 0 open a session, 1 logits, 2 generate, 3 next token of an open session)
put("serverRequest", "session", b"\x00" + b'{"input_ids": [[1, 2, 3], [4, 5, 6]], "attention_mask": [[1, 1, 1], [0, 1, 1]], '
    b'"row_adapters": ["a", "__base__"], "use_cache": true}')
put("serverRequest", "logits", b"\x01" + b'{"input_ids": [[1, 2, 3]], "row_adapters": ["b"]}')
put("serverRequest", "generate", b"\x02" + b'{"input_ids": [[5, 6]], "max_new_tokens": 3, "do_sample": true, '
    b'"temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 1, "repetition_penalty": 1.2, "stop_token_ids": [2]}')
put("serverRequest", "next", b"\x03" + b'{"tokens": [7]}')
# token classification: CoNLL (first byte: bad-line policy) and one Brown corpus text
put("conll", "two", b"\x00-DOCSTART- O\n\nThe DET\ncat NOUN\nsat VERB\n\nA DET\ndog NOUN\n")
put("conll", "columns", b"\x01EU B-ORG NNP\nrejects O VBZ\n\nbad\n")
put("brownText", "ca01", b"\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd ./.\n\n"
    b"\n\tIt/pps was/bedz n't/* ,/, hmm/uh --/-- ``/`` 1960/cd ''/''\n")


# llama2.c files: a tokenizer.bin (first byte: vocab - 259) and a tiny model.bin
def llama2c_tokenizer(pieces):
    out = struct.pack("<i", 8)
    special = ["<unk>", "\n<s>\n", "\n</s>\n"]
    for i in range(259 + len(pieces)):
        t = special[i] if i < 3 else chr(i - 3) if i < 259 else pieces[i - 259]
        b = t.encode("utf-8")
        score = 0.0 if i < 259 else (-1e9 if t == " " else -(i - 259))
        out += struct.pack("<fi", score, len(b)) + b
    return out


pieces = [" ", "on", "ce", " up", "up", " a", " t", "im"]
put("llama2cTokenizer", "tiny", bytes([len(pieces)]) + llama2c_tokenizer(pieces))
dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 1, 2, 2, 260, 4
hd = dim // heads
n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * hd * dim + layers * dim * dim
     + layers * dim + 3 * layers * hidden * dim + dim + seq * hd)
put("llama2cCheckpoint", "tiny", struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq)
    + struct.pack("<%df" % n, *[((i * 37) % 101 - 50) / 100.0 for i in range(n)]))
put("llama2cCheckpoint", "untied", struct.pack("<7i", dim, hidden, layers, heads, kv, -vocab, seq)
    + struct.pack("<%df" % (n + vocab * dim), *[0.01] * (n + vocab * dim)))
print("seeds written under", ROOT)
