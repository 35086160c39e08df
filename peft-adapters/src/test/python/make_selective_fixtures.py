#!/usr/bin/env python3
"""HF PEFT LN_TUNING fixture for peft4j's selective methods (io.github.peft4j.adapters.select.LnTuning*).

Base: the tiny Llama of peft-core's train-parity fixture (peft-core/src/test/resources/fixtures/train-parity/
llama_lora_sgd/base, reused, not copied). LNTuningConfig with HF's default targets for llama
(input_layernorm, post_attention_layernorm, norm). The tuned RMSNorm copies are set to 1 + 0.3*randn (seed 4321)
so the adapter changes the logits.

Writes ../resources/fixtures/select/llama_ln_tuning/:
    adapter/       adapter_config.json + adapter_model.safetensors (save_pretrained of the randomised adapter)
    logits.json    {"input_ids", "base_logits", "adapter_logits" (+ shapes), "saved_keys": {key: shape}}
    losses.json    five SGD steps (lr 0.1, clip 0.6, batch 2, the train-parity data in order, peft4j's collate)
                   from that adapter: {"losses", "grad_norms", "lr", "max_grad_norm"}; plus "trained_key_sums":
                   the sum of every saved tensor after the 5 steps, to check the trained values too

Run: /work/V/bin/python make_selective_fixtures.py
"""
import json
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CORE_PY = HERE / ".." / ".." / ".." / ".." / "peft-core" / "src" / "test" / "python"
sys.path.insert(0, str(CORE_PY.resolve()))
import make_fixtures as mf  # noqa: E402  (seeds, 1 thread, helpers)
import make_train_parity as tp  # noqa: E402  (the records and the collate of the train-parity fixture)
from peft import LNTuningConfig, get_peft_model  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402

BASE = (CORE_PY / ".." / "resources" / "fixtures" / "train-parity" / "llama_lora_sgd" / "base").resolve()
OUT = (HERE / ".." / "resources" / "fixtures" / "select" / "llama_ln_tuning").resolve()


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base = mf.load_base(LlamaForCausalLM, BASE)
    ids, mask, _ = mf.inputs_full()
    base_logits = mf.run_model(base, ids, mask, "causal")
    model = get_peft_model(base, LNTuningConfig(task_type="CAUSAL_LM"))
    torch.manual_seed(mf.SEED_ADAPTER)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_tuning_layers" in name:
                p.copy_(1.0 + torch.randn_like(p) * 0.3)
    model.save_pretrained(str(OUT / "adapter"), safe_serialization=True)
    (OUT / "adapter" / "README.md").unlink()  # the model-card template: not needed
    model.eval()
    adapter_logits = mf.run_model(model, ids, mask, "causal")
    mf.write_json(OUT / "logits.json", {
        "input_ids": ids, "attention_mask": mask,
        "base_logits_shape": list(base_logits.shape), "base_logits": mf.f32_list(base_logits),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": mf.f32_list(adapter_logits),
        "saved_keys": mf.saved_keys(OUT / "adapter" / "adapter_model.safetensors"),
        "versions": mf.versions()})

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=tp.LR)
    batches = [tp.RECORDS[i:i + tp.BATCH] for i in range(0, len(tp.RECORDS), tp.BATCH)]
    losses, norms = [], []
    for step in range(tp.STEPS):
        b_ids, b_mask, labels = tp.collate(batches[step % len(batches)])
        loss = model(input_ids=b_ids, attention_mask=b_mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, tp.CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    trained = OUT / "trained"
    model.save_pretrained(str(trained), safe_serialization=True)
    from safetensors.torch import load_file
    sums = {k: float(v.double().sum()) for k, v in sorted(load_file(str(trained / "adapter_model.safetensors")).items())}
    shutil.rmtree(trained)
    mf.write_json(OUT / "losses.json", {"losses": losses, "grad_norms": norms, "lr": tp.LR, "batch_size": tp.BATCH,
                                       "steps": tp.STEPS, "max_grad_norm": tp.CLIP, "trained_key_sums": sums,
                                       "versions": mf.versions()}, indent=2)
    print("saved keys", list(mf.saved_keys(OUT / "adapter" / "adapter_model.safetensors").items())[:3])
    print("losses", losses)


if __name__ == "__main__":
    main()
