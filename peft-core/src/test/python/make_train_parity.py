#!/usr/bin/env python3
"""Gradient-parity fixture for peft4j's training loop (io.github.peft4j.train.PeftTrainer).

Five SGD steps (lr 0.1, no momentum, global-norm clipping at 0.6 so that some steps are clipped and some are not) of LoRA
on the tiny Llama of make_fixtures.py, on fixed pre-tokenized data taken in order, batch size 2, with the
causal-LM loss transformers computes from `labels` (shifted, ignore index -100, mean over labelled tokens).
Batches are padded on the right with id 0 to their longest row and padding gets label -100, as peft4j's
Collator does.

Writes ../resources/fixtures/train-parity/llama_lora_sgd/:
    base/         the base model (save_pretrained)
    adapter/      the INITIAL adapter (LoRA r=4, alpha=8, q_proj+v_proj, init_lora_weights=False so A and B
                  are both nonzero and every LoRA weight gets a gradient from step 1)
    data.jsonl    the records: {"input_ids": [...], "attention_mask"?: [...], "labels"?: [...]}
    losses.json   {"losses": [5 floats], "grad_norms": [pre-clip norms], "lr", "batch_size", "steps",
                   "max_grad_norm", "versions"}

Run: /work/V/bin/python make_train_parity.py
"""
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tiny configs, seeds, versions; sets 1 thread)
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

OUT = (Path(__file__).resolve().parent / ".." / "resources" / "fixtures" / "train-parity" / "llama_lora_sgd").resolve()
LR = 0.1
STEPS = 5
BATCH = 2
CLIP = 0.6
PAD = 0
IGNORE = -100

# 6 records: plain, prompt tokens masked out of the loss, trailing padding inside the record, short ones
RECORDS = [
    {"input_ids": [47, 83, 38, 53, 76, 116, 24, 121]},
    {"input_ids": [15, 49, 23, 105, 26, 30], "labels": [-100, -100, 23, 105, 26, 30]},
    {"input_ids": [5, 77, 91, 12, 64, 0, 0], "attention_mask": [1, 1, 1, 1, 1, 0, 0]},
    {"input_ids": [100, 3, 58, 99, 7]},
    {"input_ids": [11, 22, 33, 44, 55, 66, 77, 88], "labels": [-100, -100, -100, 44, 55, 66, 77, -100]},
    {"input_ids": [120, 1, 2, 127]},
]


def collate(records):
    """Right padding to the longest row; labels default to the ids, -100 wherever the mask is 0."""
    t = max(len(r["input_ids"]) for r in records)
    ids, mask, labels = [], [], []
    for r in records:
        n = len(r["input_ids"])
        m = r.get("attention_mask", [1] * n)
        lab = r.get("labels", r["input_ids"])
        ids.append(r["input_ids"] + [PAD] * (t - n))
        mask.append(m + [0] * (t - n))
        labels.append([lab[j] if m[j] == 1 else IGNORE for j in range(n)] + [IGNORE] * (t - n))
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base = mf.build_base(LlamaForCausalLM, mf.llama_config())
    base.save_pretrained(str(OUT / "base"))
    torch.manual_seed(mf.SEED_ADAPTER)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(str(OUT / "adapter"), safe_serialization=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR)
    batches = [RECORDS[i:i + BATCH] for i in range(0, len(RECORDS), BATCH)]
    losses, norms = [], []
    for step in range(STEPS):
        ids, mask, labels = collate(batches[step % len(batches)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    with open(OUT / "data.jsonl", "w") as f:
        for r in RECORDS:
            f.write(json.dumps(r) + "\n")
    mf.write_json(OUT / "losses.json", {"losses": losses, "grad_norms": norms, "lr": LR, "batch_size": BATCH,
                                       "steps": STEPS, "max_grad_norm": CLIP, "shuffle": False,
                                       "versions": mf.versions()}, indent=2)
    print("losses", losses)
    print("grad norms", norms)


if __name__ == "__main__":
    main()
