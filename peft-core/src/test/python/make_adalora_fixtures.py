#!/usr/bin/env python3
"""HF PEFT 0.21 fixtures for AdaLoRA (``tuners/adalora/``).

Every case reuses a committed tiny base (``base_case``) and writes, under ../resources/fixtures/hf-peft/<case>/:

llama_adalora, gpt2_adalora (saved adapters: forward logits and merged logits)
    adapter/            AdaLoRA adapter after its weights were randomised with a fixed seed (lora_A, lora_B :=
                        0.1 * randn, lora_E := randn); llama_adalora also gets a hand-written rank_pattern (one module
                        cut to rank 0, one to rank 2, one to rank 3, the rest full), applied to lora_E as HF's
                        RankAllocator does (masked_fill to 0), so save_pretrained cuts the tensors to the kept ranks
    input_ids.json      {"input_ids", "attention_mask"}
    logits.json         {"case", "base_case", "base_logits", "adapter_logits"}
    merged_logits.json  {"merged_logits"}: merge_and_unload() of a deep copy

llama_adalora_train (a 10-step AdamW run with the rank allocator)
    init/               the adapter as HF initialises it (torch seed 4321: lora_E = 0, lora_A, lora_B ~ N(0, 0.02)),
                        saved before any step (no rank_pattern, every tensor at init_r)
    train.json          per step the loss (task loss + orth_reg_weight * regulariser, as AdaLoraModel.forward adds
                        it), the regulariser alone, the budget and whether a mask was applied; the final
                        rank_pattern; the records, optimizer settings
    trained/            the adapter after 10 steps (save_pretrained: tensors cut by rank_pattern, zero-rank modules
                        saved as zero-sized tensors)
    input_ids.json, logits.json ("trained_logits": the trained model in eval mode on input_ids)

The training loop is written by hand to fix the order exactly (HF documents it for AdaLoRA):
    for step in 1..10: loss = model(**batch).loss; loss.backward(); optimizer.step();
                       model.base_model.update_and_allocate(step); optimizer.zero_grad()
with torch.optim.AdamW(lr 0.01, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01) on every trainable parameter, no
gradient clipping, the data of make_train_parity.py in order, batch 2. ``step`` is 1-based (the number of optimizer
steps taken, as transformers' ``state.global_step`` in a step-end callback): with total_step 10 and tfinal 3 the
final mask is computed at step 7 and re-applied at steps 8..10.

Run: /work/V/bin/python make_adalora_fixtures.py [--case NAME ...]
"""
from __future__ import annotations

import argparse
import copy
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
import make_fixtures as mf  # noqa: E402  (tiny configs, seeds, helpers; sets 1 thread)
import make_train_parity as tp  # noqa: E402  (the causal-LM records and their collation)
from peft import AdaLoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import GPT2LMHeadModel, LlamaForCausalLM  # noqa: E402

OUT = mf.DEFAULT_OUT
TRAIN = dict(lr=0.01, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, steps=10, batch_size=2)


def randomize(model):
    torch.manual_seed(mf.SEED_ADAPTER)
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
            elif "lora_E" in name:
                p.copy_(torch.randn_like(p))
            else:
                continue
            names.append(name)
    return names


def apply_rank_pattern(model, pattern):
    """Set rank_pattern (keys as HF's RankAllocator writes them: <module>.lora_E.default) and zero the cut lora_E
    entries as mask_to_budget does."""
    with torch.no_grad():
        for n, p in model.base_model.model.named_parameters():
            if n in pattern:
                p.masked_fill_(~torch.tensor(pattern[n]).view(-1, 1), 0.0)
    model.peft_config["default"].rank_pattern = pattern


def saved_case(name, model_cls, base_case, cfg, inputs, notes, pattern=None):
    case_dir = OUT / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = inputs
    base_dir, base = mf.shared_base(OUT, base_case, model_cls)
    base_logits = mf.run_model(base, ids, mask, "base")
    model = get_peft_model(base, cfg)
    model.eval()
    rand = randomize(model)
    if pattern is not None:
        apply_rank_pattern(model, pattern(model))
    adapter_logits = mf.run_model(model, ids, mask, "adapter")
    merged_model = copy.deepcopy(model).merge_and_unload()
    merged_model.eval()
    merged_logits = mf.run_model(merged_model, ids, mask, "merged")
    model.save_pretrained(str(case_dir / "adapter"), safe_serialization=True)
    (case_dir / "adapter" / "README.md").unlink(missing_ok=True)
    mf.write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    mf.write_json(case_dir / "logits.json", {
        "case": name, "model_class": model_cls.__name__, "peft_type": "ADALORA", "base_case": base_case,
        "base_logits_shape": list(base_logits.shape), "base_logits": mf.f32_list(base_logits),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": mf.f32_list(adapter_logits)})
    mf.write_json(case_dir / "merged_logits.json", {
        "case": name, "merged_logits_shape": list(merged_logits.shape), "merged_logits": mf.f32_list(merged_logits)})
    rp = PeftModel.from_pretrained(mf.load_base(model_cls, base_dir), str(case_dir / "adapter"))
    rp.eval()
    reload_diff = mf.max_diff(mf.run_model(rp, ids, mask, "adapter"), adapter_logits)
    try:
        mf.run_model(rp, ids, mask, "mixed", adapter_names=["default", "__base__"])
        mixed_error = None
    except Exception as e:  # noqa: BLE001  (HF's SVDLinear passes adapter_names on to nn.Linear)
        mixed_error = f"{type(e).__name__}: {e}"
    meta = {
        "case": name, "versions": mf.versions(), "seeds": {"model": mf.SEED_MODEL, "adapter": mf.SEED_ADAPTER},
        "model_class": model_cls.__name__, "base_case": base_case, "attn_implementation": mf.ATTN_IMPL,
        "dtype": "float32", "inputs": input_desc, "randomized_params": rand,
        "adapter_keys": mf.saved_keys(case_dir / "adapter" / "adapter_model.safetensors"),
        "adapter_config": json.loads((case_dir / "adapter" / "adapter_config.json").read_text()),
        "max_abs_diff_adapter_vs_base": mf.max_diff(adapter_logits, base_logits),
        "max_abs_diff_merged_vs_adapter": mf.max_diff(merged_logits, adapter_logits),
        "reload_max_abs_diff_adapter": reload_diff,
        "mixed_batch_error": mixed_error,
        "notes": [f"base/ is the committed base of '{base_case}' (not repeated here).", *notes],
    }
    mf.write_json(case_dir / "meta.json", meta, indent=1)
    print(f"   {name}: adapter-vs-base={meta['max_abs_diff_adapter_vs_base']:.3g} "
          f"merged-vs-adapter={meta['max_abs_diff_merged_vs_adapter']:.3g} reload={reload_diff} mixed={mixed_error}")


def llama_pattern(model):
    names = [n for n, _ in model.base_model.model.named_parameters() if "lora_E" in n]
    # 6 modules at init_r 4: layer 0 q_proj -> rank 0, layer 0 v_proj -> 2, layer 1 down_proj -> 3, the rest full
    pattern = {n: [True] * 4 for n in names}
    pattern[names[0]] = [False] * 4
    pattern[names[1]] = [True, False, True, False]
    pattern[names[5]] = [False, True, True, True]
    return pattern


def case_llama_adalora():
    saved_case("llama_adalora", LlamaForCausalLM, "llama_lora",
               AdaLoraConfig(init_r=4, target_r=2, lora_alpha=8, total_step=10,
                             target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"),
               mf.inputs_left_padded(3),
               ["AdaLoRA init_r=4 lora_alpha=8 (scale 8 / (4 + 1e-5)) on q_proj, v_proj, down_proj; a hand-written "
                "rank_pattern (layer 0 q_proj rank 0, layer 0 v_proj rank 2, layer 1 down_proj rank 3) with the cut "
                "lora_E entries zeroed, so the saved tensors are cut (zero-sized for rank 0).",
                "Row 2 LEFT padded: compare only attention_mask == 1."],
               pattern=llama_pattern)


def case_gpt2_adalora():
    saved_case("gpt2_adalora", GPT2LMHeadModel, "gpt2_lora",
               AdaLoraConfig(init_r=3, target_r=2, lora_alpha=6, total_step=10, target_modules=["c_attn", "c_fc"],
                             fan_in_fan_out=True, task_type="CAUSAL_LM"),
               mf.inputs_right_padded(2),
               ["AdaLoRA init_r=3 lora_alpha=6 on GPT-2 Conv1D c_attn, c_fc (fan_in_fan_out=true: only the merge "
                "transposes); no rank_pattern (all tensors at init_r).",
                "Row 2 RIGHT padded: compare only attention_mask == 1."])


def regulariser(model, adapter="default"):
    """AdaLoraModel.forward's term before orth_reg_weight (for the record)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for name, p in model.base_model.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and adapter in name:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                total += float(torch.norm(cov - torch.eye(*cov.size()), p="fro"))
                n += 1
    return total / n


def case_llama_adalora_train():
    name, base_case = "llama_adalora_train", "llama_lora"
    case_dir = OUT / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    base_dir, base = mf.shared_base(OUT, base_case, LlamaForCausalLM)
    cfg = AdaLoraConfig(init_r=4, target_r=1, lora_alpha=8, tinit=2, tfinal=3, deltaT=1, total_step=TRAIN["steps"],
                        beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                        target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM")
    torch.manual_seed(mf.SEED_ADAPTER)
    model = get_peft_model(base, cfg)
    model.save_pretrained(str(case_dir / "init"), safe_serialization=True)
    (case_dir / "init" / "README.md").unlink(missing_ok=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TRAIN["lr"], betas=TRAIN["betas"], eps=TRAIN["eps"],
                            weight_decay=TRAIN["weight_decay"])
    b = TRAIN["batch_size"]
    batches = [tp.RECORDS[i:i + b] for i in range(0, len(tp.RECORDS), b)]
    steps = []
    for step in range(1, TRAIN["steps"] + 1):
        ids, mask, labels = tp.collate(batches[(step - 1) % len(batches)])
        reg = regulariser(model)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        budget, mask_ind = model.base_model.rankallocator.budget_schedule(step)
        model.base_model.update_and_allocate(step)
        opt.zero_grad()
        rp = model.peft_config["default"].rank_pattern
        steps.append({"step": step, "loss": float(loss), "orth_reg": reg, "budget": budget,
                      "kept": None if rp is None else sum(sum(v) for v in rp.values())})
        print(f"   step {step}: loss {float(loss):.6f} reg {reg:.6f} budget {budget} kept {steps[-1]['kept']}")
    final_pattern = {k.replace(".default", ""): v for k, v in model.peft_config["default"].rank_pattern.items()}
    model.save_pretrained(str(case_dir / "trained"), safe_serialization=True)
    (case_dir / "trained" / "README.md").unlink(missing_ok=True)
    model.eval()
    ids, mask, input_desc = mf.inputs_left_padded(3)
    trained_logits = mf.run_model(model, ids, mask, "trained")
    rp_model = PeftModel.from_pretrained(mf.load_base(LlamaForCausalLM, base_dir), str(case_dir / "trained"))
    rp_model.eval()
    reload_diff = mf.max_diff(mf.run_model(rp_model, ids, mask, "trained"), trained_logits)
    mf.write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    mf.write_json(case_dir / "logits.json", {
        "case": name, "model_class": "LlamaForCausalLM", "peft_type": "ADALORA", "base_case": base_case,
        "trained_logits_shape": list(trained_logits.shape), "trained_logits": mf.f32_list(trained_logits)})
    mf.write_json(case_dir / "train.json", {
        "losses": [s["loss"] for s in steps], "steps_detail": steps, "rank_pattern": final_pattern,
        "lr": TRAIN["lr"], "weight_decay": TRAIN["weight_decay"], "betas": list(TRAIN["betas"]), "eps": TRAIN["eps"],
        "batch_size": b, "steps": TRAIN["steps"], "max_grad_norm": 0, "shuffle": False,
        "optimizer": "torch.optim.AdamW", "step_numbering": "update_and_allocate(step), step = 1..10 after optimizer.step()",
        "loss": "causal LM (shifted labels, -100 ignored) + orth_reg_weight * regulariser",
        "records": tp.RECORDS, "versions": mf.versions()}, indent=1)
    meta = {
        "case": name, "versions": mf.versions(), "seeds": {"model": mf.SEED_MODEL, "adapter_init": mf.SEED_ADAPTER},
        "model_class": "LlamaForCausalLM", "base_case": base_case, "attn_implementation": mf.ATTN_IMPL,
        "dtype": "float32", "inputs": input_desc,
        "init_keys": mf.saved_keys(case_dir / "init" / "adapter_model.safetensors"),
        "trained_keys": mf.saved_keys(case_dir / "trained" / "adapter_model.safetensors"),
        "trained_config": json.loads((case_dir / "trained" / "adapter_config.json").read_text()),
        "reload_max_abs_diff_trained": reload_diff,
        "notes": [f"base/ is the committed base of '{base_case}' (not repeated here).",
                  "init_r 4 -> target_r 1 over 6 modules (budget 24 -> 6), tinit 2, tfinal 3, deltaT 1, total_step 10.",
                  "Row 2 LEFT padded in input_ids.json: compare only attention_mask == 1."],
    }
    mf.write_json(case_dir / "meta.json", meta, indent=1)
    print(f"   {name}: final kept {sum(sum(v) for v in final_pattern.values())} reload={reload_diff}")


CASES = {"llama_adalora": case_llama_adalora, "gpt2_adalora": case_gpt2_adalora,
         "llama_adalora_train": case_llama_adalora_train}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    args = ap.parse_args(argv)
    for c in args.case or CASES:
        print(f"== {c}")
        CASES[c]()


if __name__ == "__main__":
    main()
