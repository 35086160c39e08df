#!/usr/bin/env python3
"""Greedy-generation reference fixtures for peft4j's Generator (transformers `generate`, do_sample=False).

Writes ../resources/fixtures/hf-peft/<case>/ for the cases `llama_generate` and `gpt2_generate`:

    base/            config.json (with eos_token_id / pad_token_id), model.safetensors, generation_config.json
    adapter/         LoRA adapter (PeftModel.save_pretrained), weights randomised like make_fixtures.py
    generate.json    {"prompts": {"batch": {input_ids, attention_mask}, "single": {...}},
                      "max_new_tokens", "eos_token_id", "pad_token_id",
                      "base_batch", "adapter_batch", "base_single", "adapter_single": new token ids [B, <=N],
                      "eos_hit": {variant: [row hit EOS?]},
                      "penalty": {repetition_penalty 1.5, two stop ids, 8 tokens, "base_batch"}, "versions"}

The batch has two prompts, row 2 LEFT padded (pad id 0, mask 0); "single" is row 1 alone, unpadded.
EOS is exercised on purpose: the script first generates with the BASE model and no EOS, then declares as EOS the
first new token that row 2 produced at its 3rd step or later (and that row 1 never produced), so the base batch
stops row 2 mid-way (when the probe repeats one token, as the tiny GPT-2 does, the config's EOS
is kept: it lies outside the vocabulary, so EOS is explicitly not exercised there); whether the adapter variants hit it is recorded in "eos_hit", and generates every variant again
with that EOS. Rows that stop early are filled with the pad id, as transformers does.

Usage: /work/V/bin/python make_generation_fixture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel, GenerationConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

import make_fixtures as mf

MAX_NEW = 10
PROMPT_BATCH_IDS = [list(mf.INPUT_IDS[0]), [mf.PAD_ID] * 3 + mf.INPUT_IDS[1][:5]]
PROMPT_BATCH_MASK = [[1] * 8, [0] * 3 + [1] * 5]
PROMPT_SINGLE_IDS = [list(mf.INPUT_IDS[0])]


def gen(model, ids, mask, eos, max_new=MAX_NEW, **extra):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                             max_new_tokens=max_new, eos_token_id=eos, pad_token_id=mf.PAD_ID,
                             num_beams=1, use_cache=True, **extra)
    return out[:, len(ids[0]):].tolist()


def make(out_root: Path, name: str, model_cls, cfg, targets):
    case = out_root / name
    if case.exists():
        shutil.rmtree(case)
    (case / "base").mkdir(parents=True)
    base = mf.build_base(model_cls, cfg)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM",
                      fan_in_fan_out=(model_cls is GPT2LMHeadModel))
    model = get_peft_model(base, lora)
    mf.randomize(model)
    model.eval()

    batch_mask = PROMPT_BATCH_MASK
    with model.disable_adapter():
        probe = gen(model, PROMPT_BATCH_IDS, batch_mask, None)
    # the first token of row 2 from step 2 on that row 2 had not produced before and row 1 never produces
    eos = next((t for i, t in enumerate(probe[1]) if i >= 2 and t not in probe[1][:i] and t not in probe[0]
               and t != mf.PAD_ID), None)
    if eos is None:  # degenerate probe (one token repeated): keep the config's EOS, outside the tiny vocabulary
        eos = base.config.eos_token_id

    res = {}
    with model.disable_adapter():
        res["base_batch"] = gen(model, PROMPT_BATCH_IDS, batch_mask, eos)
        res["base_single"] = gen(model, PROMPT_SINGLE_IDS, [[1] * 8], eos)
    res["adapter_batch"] = gen(model, PROMPT_BATCH_IDS, batch_mask, eos)
    res["adapter_single"] = gen(model, PROMPT_SINGLE_IDS, [[1] * 8], eos)
    eos_hit = {k: [eos in row for row in v] for k, v in res.items()}
    # repetition penalty 1.5 with a second stop id (the 5th token of base row 1), 8 new tokens, base model
    extra_stop = res["base_batch"][0][4]
    with model.disable_adapter():
        res_penalty = gen(model, PROMPT_BATCH_IDS, batch_mask, [eos, extra_stop], max_new=8, repetition_penalty=1.5)

    base_model = model.get_base_model()
    base_model.config.eos_token_id = eos
    base_model.config.pad_token_id = mf.PAD_ID
    base_model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=mf.PAD_ID)
    model.save_pretrained(str(case / "adapter"))
    # save the base weights without LoRA layers: unload() gives back the untouched base modules
    plain = model.unload()
    plain.save_pretrained(str(case / "base"))

    doc = {
        "case": name,
        "prompts": {"batch": {"input_ids": PROMPT_BATCH_IDS, "attention_mask": batch_mask},
                    "single": {"input_ids": PROMPT_SINGLE_IDS, "attention_mask": [[1] * 8]}},
        "max_new_tokens": MAX_NEW, "eos_token_id": eos, "pad_token_id": mf.PAD_ID,
        **res, "eos_hit": eos_hit,
        "penalty": {"repetition_penalty": 1.5, "max_new_tokens": 8, "eos_token_id": [eos, extra_stop],
                    "base_batch": res_penalty}, "probe_without_eos": probe,
        "lora": {"r": 4, "alpha": 8, "target_modules": targets, "weights": "0.1*randn (make_fixtures.randomize)"},
        "versions": mf.versions(),
    }
    mf.write_json(case / "generate.json", doc, indent=1)
    print(name, json.dumps({k: v for k, v in doc.items() if k.endswith(("batch", "single")) or k in ("eos_token_id", "eos_hit")}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(mf.DEFAULT_OUT))
    out = Path(ap.parse_args().out)
    make(out, "llama_generate", LlamaForCausalLM, mf.llama_config(), ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                       "gate_proj", "up_proj", "down_proj"])
    make(out, "gpt2_generate", GPT2LMHeadModel, mf.gpt2_config(), ["c_attn", "c_proj"])


if __name__ == "__main__":
    main()
