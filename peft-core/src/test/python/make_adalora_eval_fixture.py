#!/usr/bin/env python3
"""HF PEFT 0.21's evaluation loss of an AdaLoRA model: ``AdaLoraModel.forward`` adds
``orth_reg_weight * regulariser`` to ``outputs.loss`` whenever a loss is computed, in ``model.eval()`` too, so the
Trainer's ``eval_loss`` includes it.

Reads the committed case llama_adalora_train (base: llama_lora/base, adapter: trained/) and writes
../resources/fixtures/hf-peft/llama_adalora_train/eval.json:

    eval_loss         model(**batch, labels=...).loss in eval mode, the six records of make_train_parity.py as one batch
    eval_task_loss    the same forward through the wrapped transformers model (no regulariser)
    orth_reg          eval_loss - eval_task_loss (= orth_reg_weight * mean Frobenius distance, rank-0 modules count 0)

Run: /work/V/bin/python make_adalora_eval_fixture.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
import make_train_parity as tp  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402


def main():
    case = mf.DEFAULT_OUT / "llama_adalora_train"
    base = mf.load_base(LlamaForCausalLM, mf.DEFAULT_OUT / "llama_lora" / "base")
    model = PeftModel.from_pretrained(base, str(case / "trained"), is_trainable=True)
    model.eval()
    ids, mask, labels = tp.collate(tp.RECORDS)
    with torch.no_grad():
        loss = float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)
        task = float(model.base_model.model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    out = {"eval_loss": loss, "eval_task_loss": task, "orth_reg": loss - task, "batch_size": len(tp.RECORDS),
           "records": tp.RECORDS, "adapter": "trained/", "versions": mf.versions()}
    mf.write_json(case / "eval.json", out, indent=1)
    print(f"eval_loss {loss:.6f} task {task:.6f} reg {loss - task:.6f}")


if __name__ == "__main__":
    main()
