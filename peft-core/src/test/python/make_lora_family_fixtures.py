#!/usr/bin/env python3
"""HF PEFT 0.21 fixtures for the LoRA family: DoRA (use_dora) and LoRA on embeddings.

Every case reuses the committed tiny base of another case (``base_case``: llama_lora, gpt2_lora, bert_lora,
qwen2_lora) and writes, under ../resources/fixtures/hf-peft/<case>/:

    adapter/            the adapter (PeftModel.save_pretrained) after its weights were randomised with a fixed seed:
                        lora_A / lora_B / lora_embedding_A / lora_embedding_B := 0.1 * randn,
                        lora_magnitude_vector *= 1 + 0.1 * randn (so m differs from the weight norm), a
                        modules_to_save copy += 0.1 * randn
    input_ids.json      {"input_ids", "attention_mask"}
    logits.json         {"case", "base_case", "base_logits", "adapter_logits", ...}
    merged_logits.json  {"merged_logits"}: merge_and_unload() of a deep copy (the merged model is not stored)
    train.json          five SGD steps from adapter/ (lr 0.1, no momentum, global-norm clip 0.6, batch 2, data in
                        order, right padding with id 0, padding labelled -100 / masked): "losses", "grad_norms",
                        "records" (the data), "base_config_overrides" (dropout set to 0 in the base, so that the run
                        is deterministic; apply them to <base_case>/base/config.json)
    trained/            the adapter after the five steps (save_pretrained)
    meta.json           versions, seeds, configs, saved keys and shapes, diffs, HF behaviours checked here

The mixed-batch case (llama_embedding_mixed_batch) has the layout of make_fixtures.py's *_mixed_batch cases.

Run: /work/V/bin/python make_lora_family_fixtures.py [--case NAME ...]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tiny configs, seeds, helpers; sets 1 thread)
import make_train_parity as tp  # noqa: E402  (the causal-LM records and collation of the LoRA SGD parity)
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import BertForSequenceClassification, GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM  # noqa: E402

OUT = mf.DEFAULT_OUT
LR, STEPS, BATCH, CLIP = 0.1, 5, 2, 0.6

# sequence classification records: ids without the pad id 0 (BERT's word embedding has padding_idx 0)
CLS_RECORDS = [
    {"input_ids": [47, 83, 38, 53, 76, 116, 24, 121], "label": 1},
    {"input_ids": [15, 49, 23, 105, 26], "label": 0},
    {"input_ids": [5, 77, 91, 12, 64, 9], "label": 1},
    {"input_ids": [100, 3, 58, 99], "label": 0},
    {"input_ids": [11, 22, 33, 44, 55, 66, 77], "label": 0},
    {"input_ids": [120, 1, 2, 127, 8], "label": 1},
]

NO_DROPOUT = {
    "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "bert": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    "llama": {},
    "qwen2": {},
}


def randomize(model, adapter_names=None):
    """make_fixtures.randomize extended to the LoRA family's parameters (same seed, named_parameters() order)."""
    torch.manual_seed(mf.SEED_ADAPTER)
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if adapter_names is not None and not any(f".{a}." in name or name.endswith(f".{a}") for a in adapter_names):
                continue
            if any(k in name for k in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "lora_magnitude_vector" in name:
                p.mul_(1.0 + torch.randn_like(p) * 0.1)
            elif "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)
            else:
                continue
            names.append(name)
    return names


mf.randomize = randomize  # mixed_batch_case looks it up at call time


def collate_cls(records):
    t = max(len(r["input_ids"]) for r in records)
    ids = [r["input_ids"] + [0] * (t - len(r["input_ids"])) for r in records]
    mask = [[1] * len(r["input_ids"]) + [0] * (t - len(r["input_ids"])) for r in records]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor([r["label"] for r in records])


def train(model, records, collate):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=LR)
    batches = [records[i:i + BATCH] for i in range(0, len(records), BATCH)]
    losses, norms = [], []
    for step in range(STEPS):
        ids, mask, labels = collate(batches[step % len(batches)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    model.eval()
    return losses, norms


def family_case(name, model_cls, base_case, arch, cfg, inputs, notes, extra=None):
    out = OUT
    case_dir = out / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = inputs
    base_dir, base = mf.shared_base(out, base_case, model_cls)
    base_logits = mf.run_model(base, ids, mask, "base")
    model = get_peft_model(base, cfg)
    model.eval()
    rand = randomize(model)
    adapter_logits = mf.run_model(model, ids, mask, "adapter")
    model.save_pretrained(str(case_dir / "adapter"), safe_serialization=True)
    (case_dir / "adapter" / "README.md").unlink(missing_ok=True)
    facts = extra(model, ids, mask) if extra else {}

    merged_model = copy.deepcopy(model).merge_and_unload()
    merged_model.eval()
    merged_logits = mf.run_model(merged_model, ids, mask, "merged")

    mf.write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    mf.write_json(case_dir / "logits.json", {
        "case": name, "model_class": model_cls.__name__, "peft_type": "LORA", "base_case": base_case,
        "base_logits_shape": list(base_logits.shape), "base_logits": mf.f32_list(base_logits),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": mf.f32_list(adapter_logits)})
    mf.write_json(case_dir / "merged_logits.json", {
        "case": name, "merged_logits_shape": list(merged_logits.shape), "merged_logits": mf.f32_list(merged_logits)})

    # reload check
    rp = PeftModel.from_pretrained(mf.load_base(model_cls, base_dir), str(case_dir / "adapter"))
    rp.eval()
    reload_diff = mf.max_diff(mf.run_model(rp, ids, mask, "adapter"), adapter_logits)

    # five SGD steps from the saved adapter, dropout off in the base
    overrides = NO_DROPOUT[arch]
    tb = model_cls.from_pretrained(str(base_dir), attn_implementation=mf.ATTN_IMPL, dtype=torch.float32, **overrides)
    tm = PeftModel.from_pretrained(tb, str(case_dir / "adapter"), is_trainable=True)
    seq_cls = model_cls is BertForSequenceClassification
    records = CLS_RECORDS if seq_cls else tp.RECORDS
    losses, norms = train(tm, records, collate_cls if seq_cls else tp.collate)
    tm.save_pretrained(str(case_dir / "trained"), safe_serialization=True)
    (case_dir / "trained" / "README.md").unlink(missing_ok=True)
    mf.write_json(case_dir / "train.json", {
        "losses": losses, "grad_norms": norms, "lr": LR, "batch_size": BATCH, "steps": STEPS, "max_grad_norm": CLIP,
        "shuffle": False, "optimizer": "torch.optim.SGD (no momentum, no weight decay)",
        "loss": "sequence classification cross-entropy" if seq_cls else "causal LM (shifted labels, -100 ignored)",
        "records": records, "base_config_overrides": overrides, "versions": mf.versions()}, indent=1)

    meta = {
        "case": name, "versions": mf.versions(),
        "seeds": {"model": mf.SEED_MODEL, "adapter": mf.SEED_ADAPTER}, "model_class": model_cls.__name__,
        "base_case": base_case, "attn_implementation": mf.ATTN_IMPL, "dtype": "float32", "inputs": input_desc,
        "randomized_params": rand,
        "adapter_keys": mf.saved_keys(case_dir / "adapter" / "adapter_model.safetensors"),
        "trained_keys": mf.saved_keys(case_dir / "trained" / "adapter_model.safetensors"),
        "adapter_config": json.loads((case_dir / "adapter" / "adapter_config.json").read_text()),
        "max_abs_diff_adapter_vs_base": mf.max_diff(adapter_logits, base_logits),
        "max_abs_diff_merged_vs_adapter": mf.max_diff(merged_logits, adapter_logits),
        "reload_max_abs_diff_adapter": reload_diff,
        "train_losses": losses,
        **facts,
        "notes": [f"base/ is the committed base of '{base_case}' (not repeated here).", *notes],
    }
    mf.write_json(case_dir / "meta.json", meta, indent=1)
    print(f"   {name}: adapter-vs-base={meta['max_abs_diff_adapter_vs_base']:.3g} "
          f"merged-vs-adapter={meta['max_abs_diff_merged_vs_adapter']:.3g} reload={reload_diff} losses={losses}")


def dora_mixed_refusal(model, ids, mask):
    """HF refuses adapter_names= when a row's adapter uses DoRA: record the message."""
    try:
        mf.run_model(model, ids, mask, "mixed", adapter_names=["default", "__base__"])
        return {"dora_mixed_batch_error": None}
    except ValueError as e:
        return {"dora_mixed_batch_error": str(e)}


def case_llama_dora():
    family_case("llama_dora", LlamaForCausalLM, "llama_lora", "llama",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True,
                           target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"),
                mf.inputs_left_padded(3),
                ["DoRA r=4 alpha=8 (scaling 2) on q_proj, v_proj, down_proj. Saved key: "
                 "<module>.lora_magnitude_vector (shape [out], no '.weight' suffix).",
                 "Row 2 LEFT padded: compare only attention_mask == 1."],
                extra=dora_mixed_refusal)


def case_gpt2_dora():
    family_case("gpt2_dora", GPT2LMHeadModel, "gpt2_lora", "gpt2",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True, fan_in_fan_out=True,
                           target_modules=["c_attn", "c_proj"], task_type="CAUSAL_LM"),
                mf.inputs_right_padded(2),
                ["DoRA on GPT-2 Conv1D (weight stored [in, out], fan_in_fan_out=true); 'c_proj' matches attn.c_proj "
                 "and mlp.c_proj; the biases stay outside the DoRA-scaled part.",
                 "Row 2 RIGHT padded: compare only attention_mask == 1."])


def case_bert_dora():
    family_case("bert_dora", BertForSequenceClassification, "bert_lora", "bert",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True,
                           target_modules=["query", "value", "intermediate.dense"], task_type="SEQ_CLS"),
                mf.inputs_right_padded(2),
                ["DoRA on BERT query, value, intermediate.dense; SEQ_CLS: the classifier is a modules_to_save copy "
                 "(randomised, saved as base_model.model.classifier.*)."])


def tied_facts(model, ids, mask):
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    return {"lm_head_weight_is_base_embedding_weight": head.weight is emb.base_layer.weight}


def case_llama_lora_embedding():
    family_case("llama_lora_embedding", LlamaForCausalLM, "llama_lora", "llama",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["embed_tokens", "q_proj"],
                           modules_to_save=["lm_head"], task_type="CAUSAL_LM"),
                mf.inputs_left_padded(3),
                ["LoRA on embed_tokens (lora_embedding_A [r, vocab], lora_embedding_B [dim, r], no '.weight') and "
                 "q_proj; lm_head in modules_to_save. 'embed_tokens' in target_modules makes save_embedding_layers="
                 "'auto' save the unchanged base embedding as ...embed_tokens.base_layer.weight.",
                 "Row 2 LEFT padded: compare only attention_mask == 1."])


def case_qwen2_lora_embedding():
    family_case("qwen2_lora_embedding", Qwen2ForCausalLM, "qwen2_lora", "qwen2",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["embed_tokens", "v_proj"],
                           task_type="CAUSAL_LM"),
                mf.inputs_full(),
                ["tie_word_embeddings=true: lm_head.weight IS embed_tokens.base_layer.weight, so the LoRA term acts on "
                 "the input lookup only; merging writes into the shared weight, so the merged model's head changes "
                 "too (merged logits differ from the unmerged adapter logits, as HF PEFT 0.21 does)."],
                extra=tied_facts)


def case_gpt2_lora_embedding():
    family_case("gpt2_lora_embedding", GPT2LMHeadModel, "gpt2_lora", "gpt2",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["wte", "c_attn"], fan_in_fan_out=True,
                           task_type="CAUSAL_LM"),
                mf.inputs_right_padded(2),
                ["LoRA on transformer.wte (tied to lm_head) and c_attn. 'wte' is not one of PEFT's "
                 "EMBEDDING_LAYER_NAMES (embed_tokens, lm_head), so the base embedding is NOT saved.",
                 "Row 2 RIGHT padded: compare only attention_mask == 1."],
                extra=tied_facts)


def padding_facts(model, ids, mask):
    """HF's LoRA lookup passes the base embedding's padding_idx to F.embedding: that row of A^T gets no gradient."""
    emb = model.get_input_embeddings()
    a = emb.lora_embedding_A["default"]
    a.grad = None
    out = model(input_ids=torch.tensor([[5, 0, 7], [0, 9, 3]]), attention_mask=torch.ones(2, 3, dtype=torch.long))
    out.logits.sum().backward()
    g = a.grad.detach()
    model.zero_grad()
    return {"padding_idx": emb.base_layer.padding_idx,
            "pad_id_as_real_token_grad_lora_embedding_A_column_pad": float(g[:, 0].abs().sum()),
            "pad_id_as_real_token_grad_lora_embedding_A_column_5": float(g[:, 5].abs().sum())}


def case_bert_lora_embedding():
    family_case("bert_lora_embedding", BertForSequenceClassification, "bert_lora", "bert",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["word_embeddings", "query"],
                           task_type="SEQ_CLS"),
                mf.inputs_right_padded(2),
                ["LoRA on bert.embeddings.word_embeddings and query; classifier in modules_to_save (automatic).",
                 "padding_idx 0 (pad_token_id): the pad row of lora_embedding_A^T gets no gradient (see pad_id_as_real_"
                 "token_*); the training records avoid id 0 as a real token."],
                extra=padding_facts)


def case_llama_dora_embedding():
    family_case("llama_dora_embedding", LlamaForCausalLM, "llama_lora", "llama",
                LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_dora=True,
                           target_modules=["embed_tokens", "o_proj"], task_type="CAUSAL_LM"),
                mf.inputs_full(),
                ["DoRA on embed_tokens (magnitude [dim], the norm taken over the vocabulary for each embedding "
                 "dimension) and on o_proj."])


def case_llama_embedding_mixed_batch():
    mf.mixed_batch_case(
        OUT, "llama_embedding_mixed_batch", LlamaForCausalLM, "llama_lora",
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["embed_tokens", "q_proj"], task_type="CAUSAL_LM"),
        LoraConfig(r=2, lora_alpha=6, lora_dropout=0.0, target_modules=["embed_tokens", "v_proj"], task_type="CAUSAL_LM"),
        mf.inputs_left_padded(3),
        ["a: LoRA r=4 alpha=8 on embed_tokens, q_proj; b: r=2 alpha=6 on embed_tokens, v_proj (the embedding serves "
         "rows of both adapters). Each a/ and b/ also holds the base embedding (embed_tokens.base_layer.weight).",
         "Row 2 LEFT padded: compare only attention_mask == 1."])


def case_llama_lora_dora_two_adapters():
    """A plain LoRA adapter and a DoRA adapter both active on one layer (q_proj): HF's DoRA term takes the running
    output (base + the LoRA term) as its base; merge_and_unload merges them in turn (DoRA's norm from the clean W)."""
    name = "llama_lora_dora_two_adapters"
    case_dir = OUT / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = mf.inputs_full()
    _, base = mf.shared_base(OUT, "llama_lora", LlamaForCausalLM)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.add_adapter("second", LoraConfig(r=2, lora_alpha=4, use_dora=True, target_modules=["q_proj", "down_proj"],
                                           task_type="CAUSAL_LM"))
    model.eval()
    rand = randomize(model)
    model.base_model.set_adapter(["default", "second"])
    both = mf.run_model(model, ids, mask, "both")
    model.set_adapter("default")
    model.save_pretrained(str(case_dir / "adapter"), safe_serialization=True)
    for d in (case_dir / "adapter", case_dir / "adapter" / "second"):
        (d / "README.md").unlink(missing_ok=True)
    m2 = copy.deepcopy(model)
    m2.base_model.set_adapter(["default", "second"])
    merged = m2.merge_and_unload()
    merged.eval()
    merged_logits = mf.run_model(merged, ids, mask, "merged")
    mf.write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    mf.write_json(case_dir / "logits.json", {
        "case": name, "model_class": "LlamaForCausalLM", "peft_type": "LORA", "base_case": "llama_lora",
        "both_logits_shape": list(both.shape), "both_logits": mf.f32_list(both)})
    mf.write_json(case_dir / "merged_logits.json", {
        "case": name, "merged_logits_shape": list(merged_logits.shape), "merged_logits": mf.f32_list(merged_logits)})
    meta = {"case": name, "versions": mf.versions(), "base_case": "llama_lora", "inputs": input_desc,
            "randomized_params": rand,
            "adapter_keys": mf.saved_keys(case_dir / "adapter" / "adapter_model.safetensors"),
            "second_adapter_keys": mf.saved_keys(case_dir / "adapter" / "second" / "adapter_model.safetensors"),
            "max_abs_diff_merged_vs_both": mf.max_diff(merged_logits, both),
            "notes": ["adapter/ holds 'default' (LoRA r4 a8 on q_proj, v_proj) and adapter/second/ (DoRA r2 a4 on "
                      "q_proj, down_proj); both_logits with base_model.set_adapter(['default', 'second']); merged_logits "
                      "of merge_and_unload() with both active (merged in that order)."]}
    mf.write_json(case_dir / "meta.json", meta, indent=1)
    print(f"   {name}: merged-vs-both={meta['max_abs_diff_merged_vs_both']:.3g}")


CASES = {
    "llama_lora_dora_two_adapters": case_llama_lora_dora_two_adapters,
    "llama_dora": case_llama_dora,
    "gpt2_dora": case_gpt2_dora,
    "bert_dora": case_bert_dora,
    "llama_lora_embedding": case_llama_lora_embedding,
    "qwen2_lora_embedding": case_qwen2_lora_embedding,
    "gpt2_lora_embedding": case_gpt2_lora_embedding,
    "bert_lora_embedding": case_bert_lora_embedding,
    "llama_dora_embedding": case_llama_dora_embedding,
    "llama_embedding_mixed_batch": case_llama_embedding_mixed_batch,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", default=[], choices=list(CASES))
    args = ap.parse_args()
    print("versions:", json.dumps(mf.versions()))
    for n in args.case or list(CASES):
        print(f"== {n}", flush=True)
        CASES[n]()
    return 0


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":  # target_modules is a set in peft: fix its saved order
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  dict(os.environ, PYTHONHASHSEED="0"))
    sys.exit(main())
