#!/usr/bin/env python3
"""bitsandbytes (CPU, pure-PyTorch "default" backend) fixtures for the 4-bit quantiser and bnb-4bit checkpoints.

bitsandbytes cannot be pip-installed here; it runs from its source tree (see /work/shared/pyref/README.md §2):

    mkdir -p scratch/bnbsrc && tar -xzf ../shared/pyref/bitsandbytes-0.50.2.dev0-src.tar.gz -C scratch/bnbsrc
    PYTHONPATH=scratch/bnbsrc /work/V/bin/python peft-core/src/test/python/make_bnb_fixtures.py

Writes under ../resources/fixtures/bnb/:

    quantiser.safetensors  per case C: C.input (F32), C.packed (U8 [(n+1)/2,1]), C.absmax (F32, or U8 with double
                           quantisation), C.nested_absmax (F32), C.offset (F32 [1]), C.absmax_dq (F32, the absmax
                           bnb reconstructs), C.dequant (F32, bnb's dequantize_4bit); the metadata key "cases" is a
                           JSON list of {name, quant_type, blocksize, double_quant, shape}
    llama_<variant>/       base/ (save_pretrained of the 4-bit LlamaForCausalLM loaded from
                           hf-peft/llama_lora/base with BitsAndBytesConfig), adapter/ (HF PEFT LoRA on the 4-bit
                           model, weights randomised), input_ids.json, logits.json (base_logits, adapter_logits)
    llama_nf4_dq_sgd/      losses.json: five SGD steps of QLoRA as make_train_parity.py (same records, lr 0.1,
                           global-norm clip 0.6, batch 2, in order) from train-parity/llama_lora_sgd/adapter on
                           train-parity/llama_lora_sgd/base loaded 4-bit (NF4, double quantisation) by bitsandbytes
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RES = HERE.parent / "resources" / "fixtures"
OUT = RES / "bnb"
BASE = RES / "hf-peft" / "llama_lora" / "base"

torch.set_num_threads(1)

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def midpoints(quant_type):
    code = F.get_4bit_type(quant_type, device="cpu")
    s = torch.sort(code).values
    return (s[:-1] + s[1:]) / 2


def special_values(n, quant_type, gen):
    """n values with exact ties (midpoints with absmax 1), exact zeros and +-absmax inside full blocks."""
    x = torch.randn(n, generator=gen) * 0.05
    mids = midpoints(quant_type)
    # block 0 (of 64 at least): absmax exactly 1, then every midpoint once (exact ties), zeros, -1
    x[0] = 1.0
    x[1:16] = mids
    x[16:20] = 0.0
    x[20] = -1.0
    x[21:36] = -mids.flip(0)
    # a block whose absmax is a negative value, with +absmax present too
    x[64] = -0.3
    x[65] = 0.3
    x[66:70] = 0.0
    return x


def quantiser_cases():
    gen = torch.Generator().manual_seed(1234)
    cases = []
    specs = [
        # name, quant_type, blocksize, double_quant, shape
        ("nf4_b64_odd", "nf4", 64, False, [999]),
        ("nf4_b64_dq_nested3", "nf4", 64, True, [160, 251]),     # 40160 values, 628 blocks, 3 nested blocks
        ("fp4_b64_dq_nested3", "fp4", 64, True, [160, 251]),
        ("fp4_b128_odd", "fp4", 128, False, [7, 111]),           # 777 values, partial last block, odd
        ("nf4_b32_dq", "nf4", 32, True, [33, 17]),
        ("nf4_b256_dq_partial", "nf4", 256, True, [1000, 67]),   # 67000 values, 262 blocks: 2 nested (partial)
        ("fp4_b4096", "fp4", 4096, False, [3, 1500]),
        ("nf4_b64_zero_block", "nf4", 64, False, [3, 64]),       # the middle block is all zeros (CPU: code 7)
    ]
    tensors, meta = {}, []
    for name, qt, bs, dq, shape in specs:
        n = 1
        for d in shape:
            n *= d
        x = special_values(n, qt, gen)
        if name == "nf4_b64_zero_block":
            x[64:128] = 0.0
        if name == "nf4_b256_dq_partial":
            x = x * torch.exp(torch.randn(n, generator=gen))  # absmax values spread over a range
        x = x.reshape(shape).contiguous()
        packed, st = F.quantize_4bit(x, blocksize=bs, compress_statistics=dq, quant_type=qt)
        deq = F.dequantize_4bit(packed, st)
        assert packed.dtype == torch.uint8 and list(packed.shape) == [(n + 1) // 2, 1], packed.shape
        tensors[name + ".input"] = x.reshape(-1).clone()
        tensors[name + ".packed"] = packed.clone()
        tensors[name + ".dequant"] = deq.reshape(-1).clone()
        if dq:
            tensors[name + ".absmax"] = st.absmax.clone()
            tensors[name + ".nested_absmax"] = st.state2.absmax.clone()
            tensors[name + ".offset"] = st.offset.reshape(1).clone().float()
            tensors[name + ".absmax_dq"] = (F.dequantize_blockwise(st.absmax, st.state2) + st.offset).clone()
            assert torch.equal(st.state2.code, F.create_dynamic_map())
        else:
            tensors[name + ".absmax"] = st.absmax.clone()
        meta.append({"name": name, "quant_type": qt, "blocksize": bs, "double_quant": dq, "shape": shape})
    tensors["dynamic_map"] = F.create_dynamic_map()
    tensors["nf4_code"] = F.get_4bit_type("nf4", device="cpu")
    tensors["fp4_code"] = F.get_4bit_type("fp4", device="cpu")
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "quantiser.safetensors"), metadata={"format": "pt", "cases": json.dumps(meta)})
    print("quantiser:", len(meta), "cases,", sum(t.numel() for k, t in tensors.items() if k.endswith(".input")), "values")


INPUT = {"input_ids": [[47, 83, 38, 53, 76, 116, 24, 121], [15, 49, 23, 105, 26, 30, 43, 30]],
         "attention_mask": [[1] * 8, [1] * 8]}

VARIANTS = {
    # name: BitsAndBytesConfig kwargs
    "llama_nf4_dq": dict(bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True),
    "llama_fp4_skip": dict(bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                           llm_int8_skip_modules=["lm_head", "o_proj"]),
}


def checkpoint_case(name, kwargs):
    from peft import LoraConfig, get_peft_model
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, **kwargs)
    model = LlamaForCausalLM.from_pretrained(str(BASE), quantization_config=qc, dtype=torch.float32,
                                             device_map="cpu", attn_implementation="eager")
    model.eval()
    n4 = sum(1 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out / "base"))
    ids = torch.tensor(INPUT["input_ids"])
    mask = torch.tensor(INPUT["attention_mask"])
    with torch.no_grad():
        base_logits = model(input_ids=ids, attention_mask=mask).logits
    lcfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                      task_type="CAUSAL_LM")
    pm = get_peft_model(model, lcfg)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for k, p in pm.named_parameters():
            if "lora_" in k:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    pm.eval()
    with torch.no_grad():
        adapter_logits = pm(input_ids=ids, attention_mask=mask).logits
    pm.save_pretrained(str(out / "adapter"))
    (out / "input_ids.json").write_text(json.dumps(INPUT))
    (out / "logits.json").write_text(json.dumps({
        "case": name, "linear4bit_modules": n4, "bnb_config": kwargs,
        "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__},
        "base_logits_shape": list(base_logits.shape), "base_logits": base_logits.tolist(),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": adapter_logits.tolist()}))
    print(name, ": Linear4bit modules", n4, ", |adapter - base| max", (adapter_logits - base_logits).abs().max().item())


def train_case():
    sys.path.insert(0, str(HERE))
    import make_train_parity as tp
    from peft import PeftModel
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_type="nf4",
                            bnb_4bit_use_double_quant=True)
    parity = RES / "train-parity" / "llama_lora_sgd"
    base = LlamaForCausalLM.from_pretrained(str(parity / "base"), quantization_config=qc, dtype=torch.float32,
                                            device_map="cpu", attn_implementation="eager")
    model = PeftModel.from_pretrained(base, str(parity / "adapter"), is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=tp.LR)
    batches = [tp.RECORDS[i:i + tp.BATCH] for i in range(0, len(tp.RECORDS), tp.BATCH)]
    losses, norms = [], []
    for step in range(tp.STEPS):
        ids, mask, labels = tp.collate(batches[step % len(batches)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, tp.CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    out = OUT / "llama_nf4_dq_sgd"
    out.mkdir(parents=True, exist_ok=True)
    (out / "losses.json").write_text(json.dumps({
        "losses": losses, "grad_norms": norms, "lr": tp.LR, "batch_size": tp.BATCH, "steps": tp.STEPS,
        "max_grad_norm": tp.CLIP, "shuffle": False, "quantization": "nf4, blocksize 64, double quant",
        "base": "train-parity/llama_lora_sgd/base", "adapter": "train-parity/llama_lora_sgd/adapter",
        "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__}}, indent=2))
    print("qlora sgd losses", losses, "grad norms", norms)


def main():
    quantiser_cases()
    only = sys.argv[1:]
    for name, kw in VARIANTS.items():
        if not only or name in only:
            checkpoint_case(name, kw)
    if not only or "sgd" in only:
        train_case()


if __name__ == "__main__":
    main()
