#!/usr/bin/env python3
"""HF PEFT reference fixtures for the rest of the prompt family: P-tuning (PromptEncoderConfig, MLP and LSTM
reparameterisation) and proxy-tuning (decode-time logit arithmetic, Liu et al. 2024).

P-tuning cases (the standard case layout of make_fixtures.py, so check_fixtures.py reloads them):

    llama_ptuning_mlp    LlamaForCausalLM (base of llama_lora), CAUSAL_LM, 4 virtual tokens, MLP, hidden 24
    llama_ptuning_lstm   same base, 3 virtual tokens, LSTM (bidirectional, 2 layers), hidden 16
    bert_ptuning_mlp     BertForSequenceClassification (base of bert_lora), SEQ_CLS, 4 virtual tokens, MLP, hidden 32
    bert_ptuning_lstm    same base, 3 virtual tokens, LSTM (1 layer), hidden 20

  each with
    adapter/                     save_pretrained: prompt_embeddings = the encoder's OUTPUT (plus the classifier
                                 for SEQ_CLS, base_model.classifier.*)
    prompt_encoder.safetensors   the whole PromptEncoder state_dict at the same (initial) point: embedding.weight,
                                 lstm_head.* (torch.nn.LSTM names), mlp_head.{0,2[,4]}.{weight,bias}
    input_ids.json, logits.json  base_logits and adapter_logits (eval mode); base_case names the base
    sgd.json                     5 steps of plain SGD (lr 0.1 causal LM, 2.0 SEQ_CLS; clipping at 1.0) from that initial point, trained
                                 through the encoder (and the classifier for SEQ_CLS): losses and pre-clip norms
    meta.json                    versions, config, keys, notes

  BERT is loaded with hidden_dropout_prob = attention_probs_dropout_prob = 0 (meta "base_config_overrides"), so
  that training is deterministic; the eval-mode logits do not depend on it. The encoder keeps HF's default
  initialisation (seed adapter) and the classifier is the base's, so a new peft4j adapter given
  prompt_encoder.safetensors starts from exactly HF's state.

Proxy-tuning case (own layout, no meta.json, so check_fixtures.py does not take it for an adapter case):

    llama_proxy_tuning/
        small/         a smaller tiny Llama (1 layer, hidden 32) with the SAME vocabulary (128) as llama_lora's base
        small_lora/    a LoRA adapter of small/ (r 4, alpha 8, q/k/v/o_proj, randomised 0.3*randn)
        proxy.json     prompts (LEFT padded), greedy ids for alpha 1 and 0.5 and for M alone, first-step scores

  M = llama_lora/base, M+ = small + small_lora, M- = small. Each model decodes with its own key/value cache in a
  manual loop (positions cumsum(mask) - 1, as generate), s = s_M + alpha (s_M+ - s_M-), argmax; no EOS stop.

Run: /work/V/bin/python make_prompt_family_fixtures.py [--case NAME ...]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (configs, seeds, helpers; single-threaded torch)
import make_train_parity as tp  # noqa: E402  (the causal-LM training records and collation)
from peft import LoraConfig, PeftModel, PromptEncoderConfig, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertForSequenceClassification, LlamaConfig, LlamaForCausalLM  # noqa: E402

OUT = mf.DEFAULT_OUT
LR = 0.1  # causal LM
LR_SEQ_CLS = 2.0  # the base classifier is small (std 0.02): a larger step moves the prompt visibly
STEPS = 5
BATCH = 2
CLIP = 1.0
BERT_NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}

# sequence-classification records: ids (some shorter: right padding) and a class
BERT_RECORDS = [
    {"input_ids": [47, 83, 38, 53, 76, 116], "label": 1},
    {"input_ids": [15, 49, 23, 105], "label": 0},
    {"input_ids": [5, 77, 91, 12, 64, 9, 31], "label": 1},
    {"input_ids": [100, 3, 58, 99, 7], "label": 0},
    {"input_ids": [11, 22, 33], "label": 1},
    {"input_ids": [120, 1, 2, 127, 8, 8], "label": 0},
]


def bert_collate(records):
    t = max(len(r["input_ids"]) for r in records)
    ids = [r["input_ids"] + [mf.PAD_ID] * (t - len(r["input_ids"])) for r in records]
    mask = [[1] * len(r["input_ids"]) + [0] * (t - len(r["input_ids"])) for r in records]
    return torch.tensor(ids), torch.tensor(mask), torch.tensor([r["label"] for r in records])


def load_shared_base(out, base_case, model_cls, overrides):
    base_dir = out / base_case / "base"
    if not (base_dir / "model.safetensors").exists():
        raise FileNotFoundError(f"{base_dir}: generate '{base_case}' with make_fixtures.py first")
    m = model_cls.from_pretrained(str(base_dir), attn_implementation=mf.ATTN_IMPL, dtype=torch.float32, **overrides)
    m.name_or_path = ""
    m.config._name_or_path = ""
    return m.eval()


def sgd(model, batches, lr):
    """STEPS steps of plain SGD over the batches in order; returns (losses, pre-clip norms)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    losses, norms = [], []
    for step in range(STEPS):
        kw = batches[step % len(batches)]
        loss = model(**kw).loss
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, CLIP)))
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    model.eval()
    return losses, norms


def ptuning_case(out, name, model_cls, base_case, *, nvt, enc_type, hidden, layers):
    seq_cls = model_cls is BertForSequenceClassification
    task = "SEQ_CLS" if seq_cls else "CAUSAL_LM"
    case = out / name
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    overrides = BERT_NO_DROPOUT if seq_cls else {}
    base = load_shared_base(out, base_case, model_cls, overrides)
    if seq_cls:
        ids, mask, desc = mf.inputs_right_padded(2)
        types = mf.BERT_TYPE_IDS
        desc += "; token_type_ids given (peft prepends zeros for the virtual tokens)"
    else:
        ids, mask, desc = mf.inputs_left_padded(3)
        types = None
    base_logits = mf.run_model(base, ids, mask, "base", types)

    cfg = PromptEncoderConfig(task_type=task, num_virtual_tokens=nvt, encoder_reparameterization_type=enc_type,
                              encoder_hidden_size=hidden, encoder_num_layers=layers, encoder_dropout=0.0)
    torch.manual_seed(mf.SEED_ADAPTER)
    model = get_peft_model(base, cfg)
    model.eval()
    enc = model.prompt_encoder["default"]
    state = {k: v.detach().contiguous().clone() for k, v in enc.state_dict().items()}
    save_file(state, str(case / "prompt_encoder.safetensors"))
    adapter_logits = mf.run_model(model, ids, mask, "adapter", types)
    model.save_pretrained(str(case / "adapter"), safe_serialization=True)

    # the saved tensor is the encoder's output
    with torch.no_grad():
        out_emb = enc(torch.arange(nvt).unsqueeze(0))[0]
    saved = mf.saved_keys(case / "adapter" / "adapter_model.safetensors")
    from safetensors import safe_open
    with safe_open(str(case / "adapter" / "adapter_model.safetensors"), "pt") as f:
        saved_vs_output = float((f.get_tensor("prompt_embeddings") - out_emb).abs().max())

    # reload: HF loads the output into an inference-only embedding
    rb = load_shared_base(out, base_case, model_cls, overrides)
    rp = PeftModel.from_pretrained(rb, str(case / "adapter")).eval()
    reload_diff = mf.max_diff(mf.run_model(rp, ids, mask, "adapter", types), adapter_logits)
    reload_encoder = sorted(k for k, _ in rp.prompt_encoder["default"].named_parameters())

    # training from the saved initial point
    if seq_cls:
        batches = []
        for i in range(0, len(BERT_RECORDS), BATCH):
            bi, bm, bl = bert_collate(BERT_RECORDS[i:i + BATCH])
            batches.append({"input_ids": bi, "attention_mask": bm, "labels": bl})
        records = BERT_RECORDS
    else:
        batches = []
        for i in range(0, len(tp.RECORDS), BATCH):
            bi, bm, bl = tp.collate(tp.RECORDS[i:i + BATCH])
            batches.append({"input_ids": bi, "attention_mask": bm, "labels": bl})
        records = tp.RECORDS
    trainable = sorted(k for k, p in model.named_parameters() if p.requires_grad)
    lr = LR_SEQ_CLS if seq_cls else LR
    losses, norms = sgd(model, batches, lr)
    with torch.no_grad():
        trained_emb = enc(torch.arange(nvt).unsqueeze(0))[0]

    inp = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        inp["token_type_ids"] = types
    mf.write_json(case / "input_ids.json", inp)
    mf.write_json(case / "logits.json", {
        "case": name, "model_class": model_cls.__name__, "peft_type": "P_TUNING", "base_case": base_case,
        "base_logits_shape": list(base_logits.shape), "base_logits": mf.f32_list(base_logits),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": mf.f32_list(adapter_logits)})
    mf.write_json(case / "sgd.json", {
        "records": records, "losses": losses, "grad_norms": norms, "lr": lr, "batch_size": BATCH, "steps": STEPS,
        "max_grad_norm": CLIP, "shuffle": False, "trainable": trainable,
        "base_config_overrides": overrides, "trained_prompt_embeddings_shape": list(trained_emb.shape),
        "trained_prompt_embeddings": mf.f32_list(trained_emb)}, indent=1)
    with open(case / "adapter" / "adapter_config.json") as f:
        import json
        adapter_config = json.load(f)
    meta = {
        "case": name, "versions": mf.versions(), "seeds": {"model": mf.SEED_MODEL, "adapter": mf.SEED_ADAPTER},
        "model_class": model_cls.__name__, "base_case": base_case, "attn_implementation": mf.ATTN_IMPL,
        "dtype": "float32", "inputs": desc, "base_config_overrides": overrides,
        "adapter_keys": saved, "adapter_config": adapter_config,
        "prompt_encoder_keys": {k: list(v.shape) for k, v in sorted(state.items())},
        "saved_prompt_embeddings_vs_encoder_output_max_abs_diff": saved_vs_output,
        "max_abs_diff_adapter_vs_base": mf.max_diff(adapter_logits[:, nvt:] if not seq_cls else adapter_logits,
                                                    base_logits),
        "max_abs_diff_merged_vs_adapter": None,
        "reload_max_abs_diff_adapter": reload_diff, "reload_reproduces_logits": reload_diff == 0.0,
        "reloaded_encoder_parameters": reload_encoder,
        "sgd": {"losses": losses, "grad_norms": norms, "trainable": trainable},
        "notes": [
            f"base/ is the committed base of '{base_case}' (not repeated here).",
            "P-tuning prepends the encoder output [nvt, hidden] to the input embeddings, ones to the mask "
            "(and zeros to token_type_ids); causal-LM logits have nvt + S positions, virtual first.",
            "HF saves only the encoder OUTPUT (prompt_embeddings); a loaded adapter (inference_mode) is a plain "
            "embedding holding it (reloaded_encoder_parameters). The whole encoder is in prompt_encoder.safetensors.",
            "LSTM: torch.nn.LSTM(bidirectional=True, batch_first=True) over the nvt virtual tokens (batch 1), then "
            "mlp_head Linear(2h,2h) ReLU Linear(2h,d). MLP: Linear(d,h) ReLU Linear(h,h) ReLU Linear(h,d).",
            "sgd.json: model.train(), torch.optim.SGD(lr) over every trainable parameter, clip_grad_norm_ "
            "(max_grad_norm) before each step; batches of batch_size records in order, right padded with id 0 "
            "(labels -100 at padding for causal LM).",
        ],
    }
    mf.write_json(case / "meta.json", meta)
    print(f"  {name}: adapter-vs-base {meta['max_abs_diff_adapter_vs_base']:.3g}, reload {reload_diff}, "
          f"saved-vs-output {saved_vs_output}, losses {losses} norms {norms} emb moved {float((trained_emb - out_emb).abs().max()):.3g}")


def case_llama_ptuning_mlp(out):
    ptuning_case(out, "llama_ptuning_mlp", LlamaForCausalLM, "llama_lora", nvt=4, enc_type="MLP", hidden=24, layers=2)


def case_llama_ptuning_lstm(out):
    ptuning_case(out, "llama_ptuning_lstm", LlamaForCausalLM, "llama_lora", nvt=3, enc_type="LSTM", hidden=16,
                 layers=2)


def case_bert_ptuning_mlp(out):
    ptuning_case(out, "bert_ptuning_mlp", BertForSequenceClassification, "bert_lora", nvt=4, enc_type="MLP",
                 hidden=32, layers=2)


def case_bert_ptuning_lstm(out):
    ptuning_case(out, "bert_ptuning_lstm", BertForSequenceClassification, "bert_lora", nvt=3, enc_type="LSTM",
                 hidden=20, layers=1)


# ------------------------------------------------------------------------------------------------------------
# proxy-tuning
# ------------------------------------------------------------------------------------------------------------

PROXY_PROMPTS = [[47, 83, 38, 53, 76, 116], [15, 49, 23]]
PROXY_NEW = 10
PROXY_ALPHAS = [1.0, 0.5]
SMALL_INIT = 0.02
LORA_SCALE = 0.3


class Stream:
    """One model's decoding state: its own cache, mask and positions (as transformers' generate)."""

    def __init__(self, model, ids, mask):
        self.model, self.mask = model, mask.clone()
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        self.past, self.last = o.past_key_values, o.logits[:, -1].float()

    def step(self, tokens):
        self.mask = torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=self.mask.dtype)], dim=1)
        pos = (self.mask.sum(-1, keepdim=True) - 1)
        with torch.no_grad():
            o = self.model(input_ids=tokens.unsqueeze(1), attention_mask=self.mask, position_ids=pos,
                           past_key_values=self.past, use_cache=True)
        self.past, self.last = o.past_key_values, o.logits[:, -1].float()


def proxy_decode(m, plus, minus, ids, mask, alpha):
    streams = [Stream(x, ids, mask) for x in (m, plus, minus) if x is not None]
    out, first, gap = [], None, float("inf")
    for t in range(PROXY_NEW):
        if plus is not None:
            sm, sp, sn = (s.last for s in streams)
            scores = sm + alpha * (sp - sn)
        else:
            scores = streams[0].last
        if t == 0:
            first = scores.clone()
        tok = scores.argmax(-1)
        top2 = scores.topk(2, dim=-1).values
        gap = min(gap, float((top2[:, 0] - top2[:, 1]).min()))
        out.append(tok)
        for s in streams:
            s.step(tok)
    return torch.stack(out, dim=1).tolist(), first, gap


def case_llama_proxy_tuning(out):
    import json
    case = out / "llama_proxy_tuning"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir(parents=True)
    big = mf.load_base(LlamaForCausalLM, out / "llama_lora" / "base")
    small_cfg = LlamaConfig(vocab_size=mf.TINY["vocab"], hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=mf.TINY["max_pos"],
                            rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation=mf.ATTN_IMPL,
                            initializer_range=SMALL_INIT)
    torch.manual_seed(7)
    small = LlamaForCausalLM(small_cfg).eval()
    small.save_pretrained(str(case / "small"))
    minus = mf.load_base(LlamaForCausalLM, case / "small")
    tuned_base = mf.load_base(LlamaForCausalLM, case / "small")
    tuned_base.name_or_path = ""
    tuned_base.config._name_or_path = ""
    torch.manual_seed(mf.SEED_ADAPTER)
    plus = get_peft_model(tuned_base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for n, p in plus.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn_like(p) * LORA_SCALE)
    plus.eval()
    plus.save_pretrained(str(case / "small_lora"), safe_serialization=True)

    width = max(len(p) for p in PROXY_PROMPTS)
    ids = torch.tensor([[mf.PAD_ID] * (width - len(p)) + p for p in PROXY_PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROXY_PROMPTS])
    base_ids, _, _ = proxy_decode(big, None, None, ids, mask, 0.0)
    # the manual loop agrees with transformers' generate for M alone
    with torch.no_grad():
        gen = big.generate(input_ids=ids, attention_mask=mask, max_new_tokens=PROXY_NEW, do_sample=False,
                           eos_token_id=None, pad_token_id=mf.PAD_ID)[:, width:].tolist()
    runs = {}
    for a in PROXY_ALPHAS:
        got, first, gap = proxy_decode(big, plus, minus, ids, mask, a)
        runs[str(a)] = {"ids": got, "first_scores_shape": list(first.shape), "first_scores": mf.f32_list(first),
                       "min_top1_top2_gap": gap}
    expert_ids, _, _ = proxy_decode(plus, None, None, ids, mask, 0.0)
    same, _, _ = proxy_decode(big, minus, minus, ids, mask, 1.0)
    doc = {
        "case": "llama_proxy_tuning", "versions": mf.versions(), "base_case": "llama_lora",
        "m": "llama_lora/base", "m_plus": "small + small_lora", "m_minus": "small",
        "small_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                         "num_key_value_heads": 2, "vocab_size": mf.TINY["vocab"], "seed": 7,
                         "initializer_range": SMALL_INIT},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                 "randomised": f"{LORA_SCALE}*randn, seed adapter"},
        "prompts": PROXY_PROMPTS, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
        "pad_token_id": mf.PAD_ID, "max_new_tokens": PROXY_NEW, "eos": "none (no stop)",
        "alphas": PROXY_ALPHAS, "runs": runs, "m_alone_ids": base_ids, "m_plus_alone_ids": expert_ids,
        "m_minus_equals_m_plus_ids": same,
        "min_top1_top2_gap_note": "the smallest margin between the best and second-best score over all steps and rows "
                                  "of a run: greedy ids are stable under float rounding far below it",
        "manual_loop_equals_generate_for_m": gen == base_ids,
        "notes": ["Each of the three models decodes with its own DynamicCache: the LEFT-padded prompt first "
                  "(position_ids = cumsum(mask) - 1, 1 at padding), then one token per step with the mask "
                  "extended by a one and position = sum(mask) - 1.",
                  "scores = s_M + alpha * (s_M+ - s_M-) on fp32 logits, greedy argmax, the same token fed to all "
                  "three; first_scores are these scores at the first step."],
    }
    if not doc["manual_loop_equals_generate_for_m"]:
        raise AssertionError(f"manual loop {base_ids} != generate {gen}")
    for a in PROXY_ALPHAS:
        if runs[str(a)]["ids"] == base_ids:
            raise AssertionError(f"alpha {a}: proxy ids equal M's alone; the expert makes no difference")
    if same != base_ids:
        raise AssertionError("M- = M+ does not reproduce M alone")
    with open(case / "proxy.json", "w") as f:
        json.dump(doc, f)
    print("  gaps", {a: runs[a]["min_top1_top2_gap"] for a in runs}, "\n  M alone", base_ids, "\n  alpha 1", runs["1.0"]["ids"], "\n  alpha 0.5", runs["0.5"]["ids"],
          "\n  M+ alone", expert_ids)


CASES = {
    "llama_ptuning_mlp": case_llama_ptuning_mlp,
    "llama_ptuning_lstm": case_llama_ptuning_lstm,
    "bert_ptuning_mlp": case_bert_ptuning_mlp,
    "bert_ptuning_lstm": case_bert_ptuning_lstm,
    "llama_proxy_tuning": case_llama_proxy_tuning,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--case", action="append", default=[])
    args = ap.parse_args()
    for n in args.case or list(CASES):
        print("==", n, flush=True)
        CASES[n](args.out)


if __name__ == "__main__":
    main()
