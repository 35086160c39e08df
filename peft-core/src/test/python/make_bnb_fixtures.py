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
    llama_nf4_dq/merged_logits.json   HF PEFT's merge_and_unload of llama_nf4_dq/adapter into the 4-bit base
                           (bitsandbytes: dequantise, add the delta, requantise), its logits and the merged packed
                           tensors of model.layers.0.self_attn.q_proj (merged_q_proj.safetensors)
    llama_nf4_dq_dora/     a DoRA adapter (use_dora) on the llama_nf4_dq base: adapter/, logits.json (adapter_logits,
                           merged_logits after merge_and_unload)
    llama_nf4_dq_ia3/      an IA3 adapter on the llama_nf4_dq base: adapter/, logits.json (adapter_logits)
    gpt2_nf4_dq/, bert_nf4_dq_skip/   the same as llama_<variant>/ for hf-peft/gpt2_lora/base (Conv1D weights are
                           transposed to (out, in) and quantised) and hf-peft/bert_lora/base (BertForSequenceClassification,
                           llm_int8_skip_modules ["pooler", "classifier"]: "pooler" matches neither the start nor the
                           end of bert.pooler.dense, so only the classifier stays dense), plus merged_logits
    bert_nf4_dq/           base/ and base_logits only: BERT with transformers' default skip list, which is empty
                           there (the last parameter is classifier.bias), so pooler and classifier are 4-bit too, plus merged_logits in logits.json
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


def _randomise(pm, seed, names=("lora_",), scale=0.1, around=0.0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in pm.named_parameters():
            if any(n in k for n in names):
                p.copy_(around + scale * torch.randn(p.shape, generator=gen))


def _load4bit(base_dir, cls_name="LlamaForCausalLM", **kwargs):
    import transformers
    from transformers import BitsAndBytesConfig

    qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32, **kwargs)
    cls = getattr(transformers, cls_name)
    model = cls.from_pretrained(str(base_dir), quantization_config=qc, dtype=torch.float32, device_map="cpu",
                                attn_implementation="eager")
    model.eval()
    return model


NF4_DQ = dict(bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)


def _logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def merge_case():
    """HF PEFT's merge of the llama_nf4_dq LoRA adapter into its 4-bit base (dequantise, add, requantise)."""
    from peft import PeftModel

    src = OUT / "llama_nf4_dq"
    model = _load4bit(BASE, **NF4_DQ)  # the same tensors as llama_nf4_dq/base
    pm = PeftModel.from_pretrained(model, str(src / "adapter"))
    pm.eval()
    ids, mask = torch.tensor(INPUT["input_ids"]), torch.tensor(INPUT["attention_mask"])
    merged = pm.merge_and_unload()
    logits = _logits(merged, ids, mask)
    q = merged.model.layers[0].self_attn.q_proj
    sd = {k: v.clone() for k, v in q.state_dict().items() if not k.startswith("weight.quant_state")}
    save_file(sd, str(src / "merged_q_proj.safetensors"), metadata={"format": "pt"})
    (src / "merged_logits.json").write_text(json.dumps({
        "case": "llama_nf4_dq merge_and_unload", "merged_logits_shape": list(logits.shape),
        "merged_logits": logits.tolist(), "quant_state": q.weight.quant_state.as_dict(packed=False)["quant_type"],
        "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__}}, default=str))
    print("merge: merged logits", list(logits.shape), "q_proj tensors", sorted(sd))


def dora_case():
    from peft import LoraConfig, get_peft_model

    src = OUT / "llama_nf4_dq"
    model = _load4bit(BASE, **NF4_DQ)  # the same tensors as llama_nf4_dq/base
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0,
                     use_dora=True, task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    _randomise(pm, 17)
    gen = torch.Generator().manual_seed(18)
    with torch.no_grad():
        for k, p in pm.named_parameters():
            if "lora_magnitude_vector" in k:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    pm.eval()
    ids, mask = torch.tensor(INPUT["input_ids"]), torch.tensor(INPUT["attention_mask"])
    adapter_logits = _logits(pm, ids, mask)
    out = OUT / "llama_nf4_dq_dora"
    out.mkdir(parents=True, exist_ok=True)
    pm.save_pretrained(str(out / "adapter"))
    merged_logits = _logits(pm.merge_and_unload(), ids, mask)
    (out / "logits.json").write_text(json.dumps({
        "case": "llama_nf4_dq_dora", "base": "bnb/llama_nf4_dq/base",
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": adapter_logits.tolist(),
        "merged_logits_shape": list(merged_logits.shape), "merged_logits": merged_logits.tolist(),
        "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__}}))
    print("dora: |merged - adapter| max", (merged_logits - adapter_logits).abs().max().item())


def ia3_case():
    from peft import IA3Config, get_peft_model

    src = OUT / "llama_nf4_dq"
    model = _load4bit(BASE, **NF4_DQ)  # the same tensors as llama_nf4_dq/base
    cfg = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                    task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    _randomise(pm, 19, names=("ia3_l",), scale=0.2, around=1.0)
    pm.eval()
    ids, mask = torch.tensor(INPUT["input_ids"]), torch.tensor(INPUT["attention_mask"])
    adapter_logits = _logits(pm, ids, mask)
    out = OUT / "llama_nf4_dq_ia3"
    out.mkdir(parents=True, exist_ok=True)
    pm.save_pretrained(str(out / "adapter"))
    (out / "logits.json").write_text(json.dumps({
        "case": "llama_nf4_dq_ia3", "base": "bnb/llama_nf4_dq/base",
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": adapter_logits.tolist(),
        "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__}}))
    print("ia3: adapter logits", list(adapter_logits.shape))


def family_case(name, base_dir, cls_name, targets, task_type, **extra):
    """A bnb-4bit checkpoint of another family, its logits, and (with targets) a LoRA adapter's logits and HF's
    merged logits."""
    from peft import LoraConfig, get_peft_model

    model = _load4bit(base_dir, cls_name, **NF4_DQ, **extra)
    n4 = sum(1 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    out = OUT / name
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out / "base"))
    ids, mask = torch.tensor(INPUT["input_ids"]), torch.tensor(INPUT["attention_mask"])
    base_logits = _logits(model, ids, mask)
    record = {"case": name, "linear4bit_modules": n4, "bnb_config": {**NF4_DQ, **extra},
              "versions": {"torch": torch.__version__, "bitsandbytes": bnb.__version__},
              "base_logits_shape": list(base_logits.shape), "base_logits": base_logits.tolist()}
    (out / "input_ids.json").write_text(json.dumps(INPUT))
    if not targets:
        (out / "logits.json").write_text(json.dumps(record))
        print(name, ": Linear4bit modules", n4)
        return
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, task_type=task_type)
    pm = get_peft_model(model, cfg)
    _randomise(pm, 23)
    pm.eval()
    adapter_logits = _logits(pm, ids, mask)
    pm.save_pretrained(str(out / "adapter"))
    merged_logits = _logits(pm.merge_and_unload(), ids, mask)
    (out / "logits.json").write_text(json.dumps({
        **record,
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": adapter_logits.tolist(),
        "merged_logits_shape": list(merged_logits.shape), "merged_logits": merged_logits.tolist()}))
    print(name, ": Linear4bit modules", n4, ", |adapter - base| max", (adapter_logits - base_logits).abs().max().item())


EXTRA = {
    "merge": merge_case,
    "dora": dora_case,
    "ia3": ia3_case,
    "gpt2": lambda: family_case("gpt2_nf4_dq", RES / "hf-peft" / "gpt2_lora" / "base", "GPT2LMHeadModel",
                                ["c_attn", "c_proj"], "CAUSAL_LM"),
    # transformers' default skip list is empty for BERT (pooler and classifier become 4-bit): checkpoint only
    "bert": lambda: family_case("bert_nf4_dq", RES / "hf-peft" / "bert_lora" / "base",
                                "BertForSequenceClassification", None, None),
    # pooler and classifier kept dense, so the SEQ_CLS adapter can train the classifier (modules_to_save)
    "bert_skip": lambda: family_case("bert_nf4_dq_skip", RES / "hf-peft" / "bert_lora" / "base",
                                     "BertForSequenceClassification", ["query", "value"], "SEQ_CLS",
                                     llm_int8_skip_modules=["pooler", "classifier"]),
}


def main():
    """No arguments: every fixture; otherwise only the named ones (variant names, sgd, or a key of EXTRA)."""
    only = sys.argv[1:]
    if not only:
        quantiser_cases()
    for name, kw in VARIANTS.items():
        if not only or name in only:
            checkpoint_case(name, kw)
    if not only or "sgd" in only:
        train_case()
    for name, fn in EXTRA.items():
        if not only or name in only:
            fn()


if __name__ == "__main__":
    main()
