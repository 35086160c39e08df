#!/usr/bin/env python3
"""HF PEFT 0.21 fixtures for weighted LoRA combinations (``LoraModel.add_weighted_adapter``).

Every case reuses the committed tiny base of another case (llama_lora, gpt2_lora) and writes, under
../resources/fixtures/hf-peft/<case>/:

    sources/<name>/     source LoRA adapters (save_pretrained), weights := 0.1 * randn with a seed per adapter
    input_ids.json      {"input_ids", "attention_mask"}: one row of 8 tokens
    combos.json         {"base_case", "combos": [{"name", "adapters", "weights", "combination_type", "svd_rank",
                        "svd_clamp", "density", "majority_sign_method", "logits" (1, 8, vocab), "saved" (key ->
                        shape of the combined adapter's adapter_model.safetensors), "config" (r, lora_alpha,
                        target_modules sorted, use_rslora)}]}
    combined/<name>/    the combined adapters HF saves for a few deterministic combos (for the tensor and CLI checks)
    meta.json           versions, seeds, the source configs

Deterministic types only (dare_* draws torch.bernoulli masks; peft4j tests their statistics instead).

Run: /work/V/bin/python make_combine_fixtures.py [--case NAME ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tiny bases, helpers; sets 1 thread)
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import GPT2LMHeadModel, LlamaForCausalLM  # noqa: E402

OUT = mf.DEFAULT_OUT
IDS = [mf.INPUT_IDS[0]]
MASK = [[1] * len(IDS[0])]
DETERMINISTIC = ["linear", "cat", "svd", "ties", "ties_svd", "magnitude_prune", "magnitude_prune_svd"]
STORED = {"linear_3", "cat_3", "svd_rank3_clamp"}


def randomize(model, name, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f".{name}." in n or n.endswith(f".{name}"):
                if any(k in n for k in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")):
                    p.copy_(torch.randn_like(p) * 0.1)


def combo(name, adapters, weights, ctype, svd_rank=None, svd_clamp=None, density=None, msm="total"):
    return dict(name=name, adapters=adapters, weights=weights, combination_type=ctype, svd_rank=svd_rank,
                svd_clamp=svd_clamp, density=density, majority_sign_method=msm)


def standard_combos(two, w2, three, w3):
    out = []
    for t in DETERMINISTIC:
        d = 0.5 if ("ties" in t or "magnitude" in t) else None
        out.append(combo(f"{t}_2", two, w2, t, density=d))
        if three is not None:
            out.append(combo(f"{t}_3", three, w3, t, density=d))
    return out


def run_case(out_root, case, base_case, model_cls, sources, combos, notes):
    case_dir = out_root / case
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    _, base = mf.shared_base(out_root, base_case, model_cls)
    model = None
    for i, (name, cfg) in enumerate(sources.items()):
        if model is None:
            model = get_peft_model(base, cfg, adapter_name=name)
        else:
            model.add_adapter(name, cfg)
        randomize(model, name, mf.SEED_ADAPTER + i)
    model.eval()
    model.save_pretrained(str(case_dir / "sources"), selected_adapters=list(sources))
    for readme in (case_dir / "sources").rglob("README.md"):
        readme.unlink()  # the model card adds nothing here
    mf.write_json(case_dir / "input_ids.json", {"input_ids": IDS, "attention_mask": MASK})
    results = []
    for c in combos:
        n = c["name"]
        model.add_weighted_adapter(c["adapters"], c["weights"], n, combination_type=c["combination_type"],
                                   svd_rank=c["svd_rank"], svd_clamp=c["svd_clamp"], density=c["density"],
                                   majority_sign_method=c["majority_sign_method"])
        model.set_adapter(n)
        logits = mf.run_model(model, IDS, MASK, "causal")
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, selected_adapters=[n])
            saved_dir = Path(tmp) / n
            saved = mf.saved_keys(saved_dir / "adapter_model.safetensors")
            cfg = json.loads((saved_dir / "adapter_config.json").read_text())
            if n in STORED:
                shutil.copytree(saved_dir, case_dir / "combined" / n, ignore=shutil.ignore_patterns("README.md"))
        tm = cfg["target_modules"]
        results.append({**c, "logits": mf.f32_list(logits), "logits_shape": list(logits.shape), "saved": saved,
                        "config": {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"],
                                   "target_modules": sorted(tm) if isinstance(tm, list) else tm,
                                   "use_rslora": cfg["use_rslora"]}})
        model.delete_adapter(n)
        model.set_adapter(next(iter(sources)))
    mf.write_json(case_dir / "combos.json", {"case": case, "base_case": base_case, "combos": results})
    mf.write_json(case_dir / "meta.json", {
        "versions": mf.versions(), "seed_adapter": mf.SEED_ADAPTER, "notes": notes,
        "sources": {n: {"r": s.r, "lora_alpha": s.lora_alpha, "target_modules": sorted(s.target_modules),
                        "use_rslora": s.use_rslora} for n, s in sources.items()}}, indent=2)
    print(f"{case}: {len(results)} combos")


def case_llama_combine(out):
    sources = {
        "a": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"),
        "b": LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "embed_tokens"], lora_dropout=0.0, task_type="CAUSAL_LM"),
        "c": LoraConfig(r=4, lora_alpha=4, target_modules=["v_proj", "down_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"),
        "d": LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"),
    }
    combos = standard_combos(["a", "b"], [0.8, -0.5], ["a", "b", "c"], [0.6, 0.9, -0.4])
    combos += [
        combo("ties_frequency_3", ["a", "b", "c"], [0.6, 0.9, -0.4], "ties", density=0.7, msm="frequency"),
        combo("ties_svd_frequency_3", ["a", "b", "c"], [0.6, 0.9, -0.4], "ties_svd", density=0.7, msm="frequency"),
        combo("magnitude_prune_svd_rank2_3", ["a", "b", "c"], [1.0, 0.5, 0.5], "magnitude_prune_svd", svd_rank=2,
              density=0.3),
        combo("cat_mixed_ranks", ["a", "d"], [1.0, -0.7], "cat"),
        combo("svd_mixed_ranks", ["a", "d"], [1.0, -0.7], "svd"),
        combo("svd_rank3", ["a", "d"], [1.0, -0.7], "svd", svd_rank=3),
        combo("svd_rank8", ["a", "d"], [1.0, -0.7], "svd", svd_rank=8),
        combo("svd_rank3_clamp", ["a", "d"], [1.0, -0.7], "svd", svd_rank=3, svd_clamp=0.9),
        combo("single_svd_is_linear", ["b"], [0.5], "svd"),
    ]
    run_case(out, "llama_combine", "llama_lora", LlamaForCausalLM, sources, combos,
             "tiny Llama (llama_lora's base); b also targets embed_tokens (lora_embedding_A/B); d has rank 2")


def case_gpt2_combine(out):
    sources = {
        "g1": LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0, task_type="CAUSAL_LM"),
        "g2": LoraConfig(r=4, lora_alpha=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, lora_dropout=0.0, task_type="CAUSAL_LM"),
    }
    combos = [combo("linear_2", ["g1", "g2"], [0.7, -0.6], "linear"),
              combo("svd_2", ["g1", "g2"], [0.7, -0.6], "svd"),
              combo("ties_svd_2", ["g1", "g2"], [0.7, -0.6], "ties_svd", density=0.5),
              combo("cat_2", ["g1", "g2"], [0.7, -0.6], "cat")]
    run_case(out, "gpt2_combine", "gpt2_lora", GPT2LMHeadModel, sources, combos,
             "tiny GPT-2 (gpt2_lora's base): Conv1D layers, fan_in_fan_out")


CASES = {"llama_combine": case_llama_combine, "gpt2_combine": case_gpt2_combine}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", action="append")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    for name in args.case or list(CASES):
        CASES[name](Path(args.out))
