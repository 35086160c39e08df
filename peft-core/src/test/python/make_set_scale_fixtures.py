#!/usr/bin/env python3
"""HF PEFT 0.21 fixtures for LoRA's per-adapter scale at inference and for several adapters of different variants
active at once.

Case llama_set_scale_mixed (base: the committed llama_lora/base) under ../resources/fixtures/hf-peft/:

    lora/   LoRA  r 4, alpha 8, q_proj + v_proj          (A, B := 0.1 randn)
    dora/   DoRA  r 2, alpha 4, q_proj + v_proj          (A, B := 0.1 randn, magnitude *= 1 + 0.1 randn)
    ada/    AdaLoRA init_r 3, alpha 6, k_proj + o_proj   (A, B := 0.1 randn, E := randn; no rank_pattern)
            each saved alone by save_pretrained (adapter "default"), then loaded into one PeftMixedModel as
            "lora", "dora", "ada" (HF's model for adapters of different types; IA3 is not among its types)
    input_ids.json   {"input_ids", "attention_mask"} (row 2 left padded: compare only attention_mask == 1)
    logits.json      eval-mode logits:
        lora_logits           set_adapter("lora")
        lora_scaled_logits    then set_scale("lora", 0.5) on every LoRA layer (scaling = 0.5 * alpha / r)
        dora_scaled_logits    set_adapter("dora") with set_scale("dora", 2.0)
        all_logits            set_adapter(["lora", "dora", "ada"]), every scale back to 1 (set_scale(name, 1.0))
        all_scaled_logits     all three active, set_scale("lora", 0.5) and set_scale("dora", 2.0)
        scale_layer_logits    then scale_layer(3.0) on every LoRA Linear layer (AdaLoRA's layers left alone):
                              the active adapters' current scalings times 3 (lora 1.5, dora 6.0)
        unscale_layer_logits  then unscale_layer(None): every active adapter back to alpha / r (= all_logits)
    meta.json        versions, configs, notes

Run: /work/V/bin/python make_set_scale_fixtures.py
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

if os.environ.get("PYTHONHASHSEED") != "0":  # peft keeps target_modules in a set: fix the saved order
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
from peft import AdaLoraConfig, LoraConfig, PeftMixedModel, get_peft_model  # noqa: E402
from peft.tuners.adalora.layer import AdaLoraLayer  # noqa: E402
from peft.tuners.lora.layer import LoraLayer  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

OUT = mf.DEFAULT_OUT
NAME = "llama_set_scale_mixed"
CONFIGS = {
    "lora": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    "dora": LoraConfig(r=2, lora_alpha=4, use_dora=True, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    "ada": AdaLoraConfig(init_r=3, target_r=2, lora_alpha=6, total_step=10, target_modules=["k_proj", "o_proj"],
                         task_type="CAUSAL_LM"),
}


def randomize(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
            elif "lora_E" in name:
                p.copy_(torch.randn_like(p))
            elif "lora_magnitude_vector" in name:
                p.mul_(1.0 + torch.randn_like(p) * 0.1)


def lora_layers(model):
    return [m for m in model.modules() if isinstance(m, LoraLayer) and not isinstance(m, AdaLoraLayer)]


def main():
    case = OUT / NAME
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    base_dir, _ = mf.shared_base(OUT, "llama_lora", LlamaForCausalLM)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(mf.SEED_ADAPTER + i)
        m = get_peft_model(mf.load_base(LlamaForCausalLM, base_dir), cfg)
        randomize(m, mf.SEED_ADAPTER + 10 + i)
        m.save_pretrained(str(case / name), safe_serialization=True)
        (case / name / "README.md").unlink(missing_ok=True)
    mixed = PeftMixedModel.from_pretrained(mf.load_base(LlamaForCausalLM, base_dir), str(case / "lora"), adapter_name="lora")
    mixed.load_adapter(str(case / "dora"), adapter_name="dora")
    mixed.load_adapter(str(case / "ada"), adapter_name="ada")
    mixed.eval()
    ids, mask, desc = mf.inputs_left_padded(3)
    layers = lora_layers(mixed)

    def set_scale(name, s):
        for m in layers:
            m.set_scale(name, s)

    out = {"case": NAME, "base_case": "llama_lora", "model_class": "LlamaForCausalLM"}
    mixed.set_adapter("lora")
    out["lora_logits"] = mixed_run = mf.run_model(mixed, ids, mask, "lora")
    set_scale("lora", 0.5)
    out["lora_scaled_logits"] = mf.run_model(mixed, ids, mask, "lora scaled")
    mixed.set_adapter("dora")
    set_scale("dora", 2.0)
    out["dora_scaled_logits"] = mf.run_model(mixed, ids, mask, "dora scaled")
    mixed.set_adapter(["lora", "dora", "ada"])
    set_scale("lora", 1.0)
    set_scale("dora", 1.0)
    out["all_logits"] = mf.run_model(mixed, ids, mask, "all")
    set_scale("lora", 0.5)
    set_scale("dora", 2.0)
    out["all_scaled_logits"] = mf.run_model(mixed, ids, mask, "all scaled")
    for m in layers:
        m.scale_layer(3.0)
    out["scale_layer_logits"] = mf.run_model(mixed, ids, mask, "scale_layer")
    for m in layers:
        m.unscale_layer(None)
    out["unscale_layer_logits"] = mf.run_model(mixed, ids, mask, "unscale_layer")
    diffs = {
        "lora_scaled_vs_lora": mf.max_diff(out["lora_scaled_logits"], mixed_run),
        "all_scaled_vs_all": mf.max_diff(out["all_scaled_logits"], out["all_logits"]),
        "unscale_layer_vs_all": mf.max_diff(out["unscale_layer_logits"], out["all_logits"]),
    }
    shape = list(out["all_logits"].shape)
    for k in [k for k in out if k.endswith("_logits")]:
        out[k] = mf.f32_list(out[k])
    out["logits_shape"] = shape
    mf.write_json(case / "logits.json", out)
    mf.write_json(case / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    mf.write_json(case / "meta.json", {
        "case": NAME, "versions": mf.versions(), "inputs": desc, "diffs": diffs,
        "configs": {n: json.loads((case / n / "adapter_config.json").read_text()) for n in CONFIGS},
        "notes": ["PeftMixedModel with a LoRA, a DoRA (both LORA type, one LoraLayer on q_proj/v_proj) and an AdaLoRA "
                  "adapter (k_proj/o_proj).",
                  "set_scale(adapter, s) sets scaling = s * lora_alpha / r; scale_layer multiplies the active "
                  "adapters' current scaling; unscale_layer(None) resets them to lora_alpha / r.",
                  "HF applies set_scale while merged too (the merged weight keeps the old scale, unmerge then "
                  "subtracts the new one); peft4j refuses that."]}, indent=1)
    print(f"   {NAME}: {diffs}")


if __name__ == "__main__":
    main()
