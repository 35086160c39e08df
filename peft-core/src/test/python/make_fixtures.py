#!/usr/bin/env python3
"""Generate Hugging Face PEFT reference fixtures for peft4j numerical-parity tests.

Every case directory gets:

    base/                  config.json, model.safetensors (+ generation_config.json for causal LMs)
    adapter/               adapter_config.json, adapter_model.safetensors (PeftModel.save_pretrained)
    input_ids.json         {"input_ids": [[...]], "attention_mask": [[...]]}
    logits.json            {"case", "model_class", "peft_type", "base_logits_shape", "base_logits",
                            "adapter_logits_shape", "adapter_logits", ...extra keys for some cases}
    merged/                (merge-capable cases) merge_and_unload() saved with save_pretrained
    merged_logits.json     {"case", "merged_logits_shape", "merged_logits"}
    meta.json              versions, seeds, adapter config, saved adapter keys/shapes, diffs, reload check

All models are tiny random models (2 layers, hidden 64, 4 heads, intermediate 128, vocab 128,
max positions 64), fp32 on CPU, eager attention. Adapter weights are randomised with a fixed
seed (not left at their init values) so that the adapter really changes the logits.

Usage:
    python make_fixtures.py                # the NEW cases only (never touches the 6 originals)
    python make_fixtures.py --case NAME    # one case (repeatable); may name an original case
    python make_fixtures.py --all          # new cases + regenerate the 6 originals
    python make_fixtures.py --list
    python make_fixtures.py --out DIR      # default: ../resources/fixtures/hf-peft next to this file
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from peft import (  # noqa: E402
    IA3Config,
    LoraConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
)

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = (SCRIPT_DIR / ".." / "resources" / "fixtures" / "hf-peft").resolve()

SEED_MODEL = 0
SEED_INPUTS = 1234  # the historical seed of the input ids below (kept for the record)
SEED_ADAPTER = 4321
ATTN_IMPL = "eager"
PAD_ID = 0

# Same ids as the committed original fixtures.
INPUT_IDS = [[47, 83, 38, 53, 76, 116, 24, 121], [15, 49, 23, 105, 26, 30, 43, 30]]

TINY = dict(hidden=64, layers=2, heads=4, inter=128, vocab=128, max_pos=64)

torch.set_num_threads(1)  # single-threaded CPU kernels: bit-reproducible reductions
warnings.filterwarnings("ignore")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------

def inputs_full():
    ids = [list(r) for r in INPUT_IDS]
    mask = [[1] * len(r) for r in ids]
    return ids, mask, "no padding"


def inputs_left_padded(n_pad=3):
    """Row 2 left padded: n_pad pad tokens (id 0), then the first 8-n_pad ids of the original row 2."""
    r2 = INPUT_IDS[1]
    ids = [list(INPUT_IDS[0]), [PAD_ID] * n_pad + r2[: len(r2) - n_pad]]
    mask = [[1] * 8, [0] * n_pad + [1] * (8 - n_pad)]
    return ids, mask, f"row 2 LEFT padded with {n_pad} pad tokens (id {PAD_ID}); real tokens = first {8 - n_pad} ids of original row 2"


def inputs_right_padded(n_pad=2):
    r2 = INPUT_IDS[1]
    ids = [list(INPUT_IDS[0]), r2[: len(r2) - n_pad] + [PAD_ID] * n_pad]
    mask = [[1] * 8, [1] * (8 - n_pad) + [0] * n_pad]
    return ids, mask, f"row 2 RIGHT padded with {n_pad} pad tokens (id {PAD_ID}); real tokens = first {8 - n_pad} ids of original row 2"


# --------------------------------------------------------------------------------------------
# tiny configs
# --------------------------------------------------------------------------------------------

def llama_config(kv_heads=2):
    return LlamaConfig(
        vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], intermediate_size=TINY["inter"],
        num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], num_key_value_heads=kv_heads,
        max_position_embeddings=TINY["max_pos"], rms_norm_eps=1e-6, tie_word_embeddings=False,
        attn_implementation=ATTN_IMPL,
    )


def qwen2_config():
    return Qwen2Config(
        vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], intermediate_size=TINY["inter"],
        num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], num_key_value_heads=2,
        max_position_embeddings=TINY["max_pos"], rms_norm_eps=1e-6, tie_word_embeddings=True,
        use_sliding_window=False, attn_implementation=ATTN_IMPL,
    )


def mistral_config():
    return MistralConfig(
        vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], intermediate_size=TINY["inter"],
        num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"], num_key_value_heads=2,
        max_position_embeddings=TINY["max_pos"], rms_norm_eps=1e-6, tie_word_embeddings=False,
        sliding_window=None, attn_implementation=ATTN_IMPL,
    )


def gpt2_config(n_inner=TINY["inter"]):
    # The 6 original GPT-2 fixtures used n_inner=None (-> 4*64 = 256); new cases use intermediate 128.
    return GPT2Config(
        vocab_size=TINY["vocab"], n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"],
        n_positions=TINY["max_pos"], n_inner=n_inner, attn_implementation=ATTN_IMPL,
    )


def bert_config(num_labels=2):
    return BertConfig(
        vocab_size=TINY["vocab"], hidden_size=TINY["hidden"], num_hidden_layers=TINY["layers"],
        num_attention_heads=TINY["heads"], intermediate_size=TINY["inter"],
        max_position_embeddings=TINY["max_pos"], num_labels=num_labels, pad_token_id=PAD_ID,
        attn_implementation=ATTN_IMPL,
    )


def build_base(model_cls, cfg):
    torch.manual_seed(SEED_MODEL)
    model = model_cls(cfg)
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def versions():
    import accelerate
    import huggingface_hub
    import safetensors
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def f32_list(t: torch.Tensor):
    """Nested list of the float32 values, each written as the shortest decimal that round-trips
    to the same float32 (so the JSON is ~half the size of repr(double(float32)) but parses back to
    exactly the same float32)."""
    arr = t.detach().to(torch.float32).cpu().numpy()
    flat = [float(str(x)) for x in arr.reshape(-1)]
    return np.array(flat, dtype=np.float64).reshape(arr.shape).tolist()


def max_diff(a, b):
    if a is None or b is None or tuple(a.shape) != tuple(b.shape):
        return None
    return float((a.float() - b.float()).abs().max())


def write_json(path: Path, obj, indent=None):
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def saved_keys(st_path: Path):
    out = {}
    with safe_open(str(st_path), "pt") as f:
        for k in f.keys():
            out[k] = list(f.get_slice(k).get_shape())
    return dict(sorted(out.items()))


def run_model(model, ids, mask, kind, types=None, **kwargs):
    """Logits of one forward pass; types = token_type_ids (or None); kwargs go to forward (adapter_names=...)."""
    ids_t = torch.tensor(ids, dtype=torch.long)
    mask_t = torch.tensor(mask, dtype=torch.long)
    if types is not None:
        kwargs["token_type_ids"] = torch.tensor(types, dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids_t, attention_mask=mask_t, **kwargs)
    return out.logits.detach().float().clone()


def randomize(model, adapter_names=None):
    """Randomise every adapter-owned parameter with a fixed seed, in named_parameters() order:
    LoRA A/B := 0.1*randn, IA3 := 1 + 0.3*randn, prompt/prefix embedding := randn,
    modules_to_save copy += 0.1*randn. (This reproduces the original 6 fixtures' weights bit for bit.)
    Returns the list of parameter names."""
    torch.manual_seed(SEED_ADAPTER)
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if adapter_names is not None and not any(f".{a}." in name or name.endswith(f".{a}") for a in adapter_names):
                continue
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
            elif "ia3_l" in name:
                p.copy_(1.0 + torch.randn_like(p) * 0.3)
            elif "prompt_encoder" in name:
                p.copy_(torch.randn_like(p))
            elif "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.1)  # perturb the copied head (as the original fixtures did)
            else:
                continue
            names.append(name)
    return names


def load_base(model_cls, path):
    m = model_cls.from_pretrained(str(path), attn_implementation=ATTN_IMPL, dtype=torch.float32)
    m.eval()
    return m


def check_saved_adapter_keys(adapter_dir: Path):
    return saved_keys(adapter_dir / "adapter_model.safetensors")


# --------------------------------------------------------------------------------------------
# generic runner
# --------------------------------------------------------------------------------------------

def shared_base(out_root: Path, base_case: str, model_cls):
    """The committed base/ of another case (so no second copy of the same weights is committed)."""
    base_dir = out_root / base_case / "base"
    if not (base_dir / "model.safetensors").exists():
        raise FileNotFoundError(f"{base_dir}: this case reuses the base of '{base_case}'; generate that case first "
                                f"(--case {base_case})")
    model = load_base(model_cls, base_dir)
    # as a model built from a config: adapter_config's base_model_name_or_path stays null and the model card
    # names no local path
    model.name_or_path = ""
    model.config._name_or_path = ""
    return base_dir, model


def make_case(out_root: Path, name: str, model_cls, cfg, peft_cfg, inputs, *, merge: bool,
              notes=None, post_randomize=None, extra_meta=None, base_case=None):
    """Standard single-adapter case. inputs = (ids, mask, description[, token_type_ids]). With base_case the
    base model is read from <out>/<base_case>/base and no base/ is written (cfg is then unused); logits.json
    and meta.json name it under "base_case"."""
    case_dir = out_root / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = inputs[:3]
    types = inputs[3] if len(inputs) > 3 else None
    meta_notes = list(notes or [])

    if base_case is None:
        base = build_base(model_cls, cfg)
        base_dir = case_dir / "base"
        base.save_pretrained(str(base_dir))
    else:
        base_dir, base = shared_base(out_root, base_case, model_cls)
    base_logits = run_model(base, ids, mask, "base", types)

    model = get_peft_model(base, peft_cfg)
    model.eval()
    rand_names = randomize(model)
    extra = {}
    if post_randomize is not None:
        extra = post_randomize(model) or {}
    adapter_logits = run_model(model, ids, mask, "adapter", types)
    model.save_pretrained(str(case_dir / "adapter"), safe_serialization=True)

    peft_type = model.peft_config["default"].peft_type
    peft_type = peft_type.value if hasattr(peft_type, "value") else str(peft_type)

    inputs_json = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        inputs_json["token_type_ids"] = types
    write_json(case_dir / "input_ids.json", inputs_json)
    logits = {
        "case": name, "model_class": model_cls.__name__, "peft_type": peft_type,
        **({"base_case": base_case} if base_case else {}),
        "base_logits_shape": list(base_logits.shape), "base_logits": f32_list(base_logits),
        "adapter_logits_shape": list(adapter_logits.shape), "adapter_logits": f32_list(adapter_logits),
    }
    write_json(case_dir / "logits.json", logits)

    merged_logits = None
    if merge:
        merged = model.merge_and_unload()
        merged.eval()
        merged_logits = run_model(merged, ids, mask, "merged", types)
        merged.save_pretrained(str(case_dir / "merged"))
        write_json(case_dir / "merged_logits.json", {
            "case": name, "merged_logits_shape": list(merged_logits.shape),
            "merged_logits": f32_list(merged_logits)})

    # ---- reload check from disk
    rb = load_base(model_cls, base_dir)
    r_base = run_model(rb, ids, mask, "base", types)
    rp = PeftModel.from_pretrained(rb, str(case_dir / "adapter"))
    rp.eval()
    r_adapter = run_model(rp, ids, mask, "adapter", types)
    reload = {
        "reload_max_abs_diff_base": max_diff(r_base, base_logits),
        "reload_max_abs_diff_adapter": max_diff(r_adapter, adapter_logits),
    }
    if merge:
        rm = load_base(model_cls, case_dir / "merged")
        reload["reload_max_abs_diff_merged"] = max_diff(run_model(rm, ids, mask, "merged", types), merged_logits)

    with open(case_dir / "adapter" / "adapter_config.json") as f:
        adapter_config = json.load(f)
    meta = {
        "case": name,
        "versions": versions(),
        "seeds": {"model": SEED_MODEL, "inputs": SEED_INPUTS, "adapter": SEED_ADAPTER},
        "model_class": model_cls.__name__,
        **({"base_case": base_case} if base_case else {}),
        "attn_implementation": ATTN_IMPL,
        "dtype": "float32",
        "inputs": input_desc,
        "randomized_params": rand_names,
        "adapter_keys": check_saved_adapter_keys(case_dir / "adapter"),
        "max_abs_diff_adapter_vs_base": max_diff(adapter_logits, base_logits),
        "max_abs_diff_merged_vs_adapter": max_diff(merged_logits, adapter_logits) if merge else None,
        **reload,
        "reload_reproduces_logits": all(v is not None and v <= 1e-6 for v in reload.values()),
        "adapter_config": adapter_config,
    }
    if extra_meta:
        meta.update(extra_meta(model, case_dir, ids, mask) if callable(extra_meta) else extra_meta)
    meta.update(extra)
    if meta_notes:
        meta["notes"] = meta_notes
    write_json(case_dir / "meta.json", meta, indent=None)
    return meta


def padded_row_check(model_cls, case_dir: Path, ids, mask, logits_key_stored):
    """Compare the real-token logits of padded row 2 with the same row run unpadded (batch of 1)."""
    row = [t for t, m in zip(ids[1], mask[1]) if m == 1]
    pos = [i for i, m in enumerate(mask[1]) if m == 1]
    rb = load_base(model_cls, case_dir / "base")
    rp = PeftModel.from_pretrained(rb, str(case_dir / "adapter"))
    rp.eval()
    single = run_model(rp, [row], [[1] * len(row)], "adapter")[0]
    with open(case_dir / "logits.json") as f:
        stored = torch.tensor(json.load(f)[logits_key_stored])[1]
    return {
        "padded_row": 1,
        "padded_row_real_positions": pos,
        "padded_row_vs_unpadded_max_abs_diff": float((stored[pos] - single).abs().max()),
    }


# --------------------------------------------------------------------------------------------
# NEW cases
# --------------------------------------------------------------------------------------------

LLAMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def case_llama_lora_padded(out):
    name = "llama_lora_padded"
    inputs = inputs_left_padded(3)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LLAMA_ALL, task_type="CAUSAL_LM")
    meta = make_case(out, name, LlamaForCausalLM, llama_config(2), cfg, inputs, merge=True, notes=[
        "Left padding: position_ids are NOT derived from attention_mask in a plain forward(); the real tokens of "
        "row 2 sit at positions 3..7. RoPE is relative, so their logits still equal the unpadded run (see "
        "padded_row_vs_unpadded_max_abs_diff).",
        "Logits at pad query positions (row 2, positions 0..2) are fully masked (no key may be attended): their "
        "values are implementation-defined (eager: additive min-float mask -> uniform softmax over all keys). "
        "Compare only positions with attention_mask == 1.",
    ])
    meta.update(padded_row_check(LlamaForCausalLM, out / name, inputs[0], inputs[1], "adapter_logits"))
    write_json(out / name / "meta.json", meta)


def case_qwen2_lora(out):
    name = "qwen2_lora"
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], use_rslora=True,
                     rank_pattern={"q_proj": 8}, alpha_pattern={"v_proj": 32}, task_type="CAUSAL_LM")

    def scalings(model):
        sc = {}
        for n, m in model.named_modules():
            if hasattr(m, "scaling") and isinstance(getattr(m, "scaling"), dict) and "default" in m.scaling:
                sc[n.replace("base_model.model.", "", 1)] = {"r": m.r["default"], "scaling": m.scaling["default"]}
        return {"lora_scalings": sc}

    make_case(out, name, Qwen2ForCausalLM, qwen2_config(), cfg, inputs_full(), merge=True, post_randomize=scalings,
              notes=["use_rslora: scaling = lora_alpha / sqrt(r). q_proj: r=8 (rank_pattern), alpha=8 -> 8/sqrt(8); "
                     "v_proj: r=4, alpha=32 (alpha_pattern) -> 32/2 = 16.",
                     "tie_word_embeddings=true: base/model.safetensors has no lm_head.weight (lm_head = embed_tokens).",
                     "q/k/v projections have biases (Qwen2); LoRA does not touch biases (bias='none')."])


def case_mistral_lora(out):
    name = "mistral_lora"
    cfg = LoraConfig(r=2, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    make_case(out, name, MistralForCausalLM, mistral_config(), cfg, inputs_full(), merge=True,
              notes=["target_modules='all-linear' is expanded at get_peft_model time; the saved adapter_config.json "
                     "holds the expanded module-name list (lm_head excluded)."])


def case_gpt2_lora_padded(out):
    name = "gpt2_lora_padded"
    inputs = inputs_right_padded(2)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True,
                     task_type="CAUSAL_LM")
    meta = make_case(out, name, GPT2LMHeadModel, gpt2_config(), cfg, inputs, merge=True, notes=[
        "GPT-2 uses Conv1D (weight stored [in, out]); fan_in_fan_out=true. 'c_proj' matches both attn.c_proj and "
        "mlp.c_proj.",
        "Right padding: real tokens keep positions 0..5; the pad query positions 6..7 attend to the real tokens and "
        "themselves (causal), so their logits are well-defined but meaningless.",
    ])
    meta.update(padded_row_check(GPT2LMHeadModel, out / name, inputs[0], inputs[1], "adapter_logits"))
    write_json(out / name / "meta.json", meta)


def case_bert_tokcls_lora(out):
    name = "bert_tokcls_lora"
    inputs = inputs_right_padded(2)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "key", "value"],
                     task_type="TOKEN_CLS")
    meta = make_case(out, name, BertForTokenClassification, bert_config(5), cfg, inputs, merge=True, notes=[
        "task_type TOKEN_CLS: peft adds 'classifier' to modules_to_save automatically; the saved adapter stores it "
        "as base_model.model.classifier.{weight,bias} (no 'modules_to_save.default' infix). It was randomised.",
        "token_type_ids not passed (BERT uses its zero buffer). Right padding in row 2 (BERT is bidirectional; "
        "pad positions are masked as keys).",
    ])
    meta.update(padded_row_check(BertForTokenClassification, out / name, inputs[0], inputs[1], "adapter_logits"))
    write_json(out / name / "meta.json", meta)


def case_bert_prompt(out):
    name = "bert_prompt"
    cfg = PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5, prompt_tuning_init="RANDOM")
    make_case(out, name, BertForSequenceClassification, bert_config(3), cfg, inputs_full(), merge=False, notes=[
        "task_type SEQ_CLS: the classifier is in modules_to_save and is saved with the prompt embeddings "
        "(see adapter_keys). It was randomised. NOTE the key prefix: 'base_model.classifier.*' (prompt learning: "
        "PeftModel.base_model IS the transformers model) versus 'base_model.model.classifier.*' for LoRA "
        "(PeftModel.base_model is a LoraModel wrapping it).",
        "The virtual tokens are prepended to inputs_embeds; BERT's embedding layer then adds position embeddings "
        "0..(5+8-1) and token_type 0 to all 13 positions and applies LayerNorm; the attention mask is extended "
        "with 5 ones. Pooler uses position 0, i.e. the first VIRTUAL token.",
    ])


def case_llama_prompt_text(out):
    name = "llama_prompt_text"
    base_ids = [3, 17, 42, 99, 64]
    nvt = 6
    init_ids = [base_ids[i % len(base_ids)] for i in range(nvt)]
    cfg = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=nvt, prompt_tuning_init="RANDOM")

    def text_init(model):
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            model.prompt_encoder["default"].embedding.weight.copy_(emb[torch.tensor(init_ids)].clone())
        return {"init_token_ids": init_ids, "init_token_ids_source": base_ids,
                "prompt_init_note": "prompt_tuning_init=RANDOM in the config; the prompt embedding was then set to "
                                    "word_embeddings[init_token_ids] (emulating TEXT init without a tokenizer)."}

    make_case(out, name, LlamaForCausalLM, llama_config(2), cfg, inputs_full(), merge=False,
              post_randomize=text_init,
              notes=["Adapter logits have 6 + 8 = 14 positions (virtual tokens first), exactly as returned by the "
                     "model. Positions 0..13 are used for RoPE."])


def case_llama_prefix(out):
    name = "llama_prefix"
    cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3, prefix_projection=False)

    def prefix_meta(model):
        """Rebuild the adapter logits by hand from the base model + a DynamicCache, to document the exact
        semantics (layout, positions, mask)."""
        from transformers import DynamicCache
        pc = model.peft_config["default"]
        P, L, H = pc.num_virtual_tokens, pc.num_layers, pc.num_attention_heads
        D = pc.token_dim // H
        emb = model.prompt_encoder["default"].embedding.weight.detach()  # [P, L*2*token_dim]
        ids, mask, _ = inputs_full()
        ids_t, mask_t = torch.tensor(ids), torch.tensor(mask)
        B, S = ids_t.shape
        kv = emb.view(P, L * 2, H, D).permute(1, 2, 0, 3)  # [L*2, H, P, D]
        base = model.get_base_model()
        with torch.no_grad():
            ref = model(input_ids=ids_t, attention_mask=mask_t).logits
            res = {}
            for label, start in (("positions_from_P", P), ("positions_from_0", 0)):
                cache = DynamicCache(config=base.config)
                for layer in range(L):
                    k = kv[2 * layer].unsqueeze(0).expand(B, -1, -1, -1).contiguous()
                    v = kv[2 * layer + 1].unsqueeze(0).expand(B, -1, -1, -1).contiguous()
                    cache.update(k, v, layer)
                full_mask = torch.cat([torch.ones(B, P, dtype=torch.long), mask_t], dim=1)
                pos = torch.arange(start, start + S).unsqueeze(0).expand(B, -1)
                out = base(input_ids=ids_t, attention_mask=full_mask, past_key_values=cache, position_ids=pos).logits
                res[label] = float((out - ref).abs().max())
        return {"prefix_layout": {
            "num_layers": L, "num_kv_heads": H, "head_dim": D, "token_dim": pc.token_dim,
            "embedding_shape": list(emb.shape),
            "layout": "prompt_embeddings[p, (2*layer + kv)*token_dim + head*head_dim + d]; kv=0 key, kv=1 value; "
                      "keys are inserted as-is (no RoPE applied to prefix keys)",
            "manual_rebuild_max_abs_diff": res,
        }}

    make_case(out, name, LlamaForCausalLM, llama_config(2), cfg, inputs_full(), merge=False,
              post_randomize=prefix_meta,
              notes=["GQA: peft sizes the prefix with num_key_value_heads (2) -> token_dim = 2*16 = 32, "
                     "num_attention_heads in adapter_config = 2.",
                     "peft passes the prefix as a DynamicCache of length P and prepends P ones to attention_mask; "
                     "no position_ids are passed, so transformers derives query positions from the cache length: "
                     "P..P+S-1 (see prefix_layout.manual_rebuild_max_abs_diff)."])


# BERT prefix tuning (sequence and token classification). HF PEFT 0.21 calls the backbone (`bert`) itself with
# past_key_values (BertFor*Classification.forward has no such parameter), then dropout + classifier.
BERT_TYPE_IDS = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0]]


def bert_prefix_case(out, name, model_cls, base_case, nvt, *, projection=None, token_types=False):
    """projection: None (plain embedding) or encoder_hidden_size of the prefix MLP."""
    task = "SEQ_CLS" if model_cls is BertForSequenceClassification else "TOKEN_CLS"
    ids, mask, desc = inputs_right_padded(2)
    inputs = (ids, mask, desc + ("; token_type_ids given (passed through as they are)" if token_types else ""),
              *([BERT_TYPE_IDS] if token_types else []))
    kw = dict(prefix_projection=True, encoder_hidden_size=projection) if projection else dict(prefix_projection=False)
    cfg = PrefixTuningConfig(task_type=task, num_virtual_tokens=nvt, **kw)

    def post(model):
        """With a projection, scale the MLP to a useful range (randn weights would saturate the tanh) and store
        the whole prefix encoder (only its output is in the saved adapter). Then rebuild the logits by hand
        from a DynamicCache to document positions and mask."""
        from transformers import DynamicCache
        from safetensors.torch import save_file
        res = {}
        enc = model.prompt_encoder["default"]
        if projection:
            torch.manual_seed(SEED_ADAPTER + 1)
            with torch.no_grad():
                for pname, p in enc.transform.named_parameters():
                    fan_in = p.shape[-1] if p.dim() == 2 else 1
                    p.copy_(torch.randn_like(p) * (fan_in ** -0.5 if p.dim() == 2 else 0.1))
            state = {k: v.detach().contiguous().clone() for k, v in enc.state_dict().items()}
            (out / name).mkdir(parents=True, exist_ok=True)
            save_file(state, str(out / name / "prefix_encoder.safetensors"))
            res["prefix_encoder_keys"] = {k: list(v.shape) for k, v in sorted(state.items())}
            res["prefix_encoder_note"] = ("prefix_encoder.safetensors: the full PrefixEncoder state_dict (embedding + "
                                          "transform MLP, keys as in prompt_encoder.default.*); transform weights "
                                          "randn/sqrt(fan_in), biases 0.1*randn (seed adapter+1) after randomize().")
        pc = model.peft_config["default"]
        P, L, H = pc.num_virtual_tokens, pc.num_layers, pc.num_attention_heads
        D = pc.token_dim // H
        tokens = model.prompt_tokens["default"][:P].unsqueeze(0)
        with torch.no_grad():
            emb = enc(tokens)[0]  # [P, L*2*token_dim]
        kv = emb.view(P, L * 2, H, D).permute(1, 2, 0, 3)
        ids_t, mask_t = torch.tensor(ids), torch.tensor(mask)
        B, S = ids_t.shape
        types_t = torch.tensor(BERT_TYPE_IDS) if token_types else None
        base = model.get_base_model()
        with torch.no_grad():
            ref = model(input_ids=ids_t, attention_mask=mask_t, token_type_ids=types_t).logits
            for label, start in (("positions_from_P", P), ("positions_from_0", 0)):
                cache = DynamicCache(config=base.config)
                for layer in range(L):
                    cache.update(kv[2 * layer].unsqueeze(0).expand(B, -1, -1, -1).contiguous(),
                                 kv[2 * layer + 1].unsqueeze(0).expand(B, -1, -1, -1).contiguous(), layer)
                full_mask = torch.cat([torch.ones(B, P, dtype=torch.long), mask_t], dim=1)
                pos = torch.arange(start, start + S).unsqueeze(0).expand(B, -1)
                o = base.bert(input_ids=ids_t, attention_mask=full_mask, past_key_values=cache, position_ids=pos,
                              token_type_ids=types_t)
                h = o.pooler_output if task == "SEQ_CLS" else o.last_hidden_state
                lg = base.classifier(base.dropout(h))
                res.setdefault("manual_rebuild_max_abs_diff", {})[label] = float((lg - ref).abs().max())
        res["prefix_layout"] = {
            "num_layers": L, "num_heads": H, "head_dim": D, "token_dim": pc.token_dim, "embedding_shape": list(emb.shape),
            "layout": "prompt_embeddings[p, (2*layer + kv)*token_dim + head*head_dim + d]; kv=0 key, kv=1 value",
        }
        return res

    meta = make_case(out, name, model_cls, None, cfg, inputs, merge=False, base_case=base_case, post_randomize=post,
                     notes=[
        f"base/ is the committed base of '{base_case}' (not repeated here).",
        "HF PEFT prefix tuning on BERT: the prefix goes in as a DynamicCache of P positions (prepended to every "
        "layer's keys/values), P ones are prepended to attention_mask (bidirectional: every query sees the prefix), "
        "token_type_ids are passed as they are (not extended), and no position_ids are passed, so BertEmbeddings "
        "uses positions P..P+S-1 (see manual_rebuild_max_abs_diff). Logits have no virtual positions.",
        "SEQ_CLS: pooler on the first REAL token, dropout, classifier. TOKEN_CLS: dropout, classifier on every "
        "position. The classifier is in modules_to_save (randomised) and saved as base_model.classifier.*.",
        *(["prefix_projection: the saved prompt_embeddings are the MLP OUTPUT [P, L*2*token_dim]; the MLP itself "
           "is in prefix_encoder.safetensors."] if projection else []),
    ])
    # padded row 2 vs. the same real tokens alone (batch of 1)
    pos = [i for i, m in enumerate(mask[1]) if m == 1]
    rb = load_base(model_cls, out / base_case / "base")
    rp = PeftModel.from_pretrained(rb, str(out / name / "adapter")).eval()
    single = run_model(rp, [[ids[1][i] for i in pos]], [[1] * len(pos)], "adapter",
                       [[BERT_TYPE_IDS[1][i] for i in pos]] if token_types else None)[0]
    with open(out / name / "logits.json") as f:
        stored = torch.tensor(json.load(f)["adapter_logits"])[1]
    meta["padded_row_vs_unpadded_max_abs_diff"] = float(((stored[pos] if task == "TOKEN_CLS" else stored)
                                                         - single).abs().max())
    write_json(out / name / "meta.json", meta)


def case_bert_prefix(out):
    bert_prefix_case(out, "bert_prefix", BertForSequenceClassification, "bert_lora", 4)


def case_bert_prefix_proj(out):
    bert_prefix_case(out, "bert_prefix_proj", BertForSequenceClassification, "bert_lora", 3, projection=32,
                     token_types=True)


def case_bert_tokcls_prefix(out):
    bert_prefix_case(out, "bert_tokcls_prefix", BertForTokenClassification, "bert_tokcls_lora", 4)


def case_bert_tokcls_prefix_proj(out):
    bert_prefix_case(out, "bert_tokcls_prefix_proj", BertForTokenClassification, "bert_tokcls_lora", 3,
                     projection=48, token_types=True)


# Mixed-adapter batches: HF PEFT's model(..., adapter_names=[one name per row]) with two LoRA adapters "a" and "b"
# ("__base__" = no adapter for that row).
MIXED_BATCHES = [["a", "b"], ["__base__", "a"], ["b", "__base__"]]


def mixed_batch_case(out, name, model_cls, base_case, cfg_a, cfg_b, inputs, notes):
    """Layout: a/ and b/ (PeftModel.save_pretrained of a model whose adapters are named a and b: each adapter in
    its own subdirectory), input_ids.json, logits.json, meta.json; base/ is <base_case>/base."""
    case_dir = out / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = inputs
    base_dir, base = shared_base(out, base_case, model_cls)
    base_logits = run_model(base, ids, mask, "base")
    model = get_peft_model(base, cfg_a, adapter_name="a")
    model.add_adapter("b", cfg_b)
    model.eval()
    rand_names = randomize(model)

    single = {"__base__": base_logits}
    for a in ("a", "b"):
        model.set_adapter(a)
        single[a] = run_model(model, ids, mask, a)
    model.set_adapter("a")
    mixed = [run_model(model, ids, mask, "mixed", adapter_names=names) for names in MIXED_BATCHES]
    model.save_pretrained(str(case_dir), safe_serialization=True)  # writes a/ and b/ (names other than "default")
    (case_dir / "README.md").unlink(missing_ok=True)

    write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    logits = {"case": name, "model_class": model_cls.__name__, "peft_type": "LORA", "base_case": base_case,
              "adapters": ["a", "b"]}
    for key, t in (("base_logits", base_logits), ("a_logits", single["a"]), ("b_logits", single["b"])):
        logits[key + "_shape"] = list(t.shape)
        logits[key] = f32_list(t)
    logits["mixed_batches"] = [{"adapter_names": names, "key": f"mixed_{i}_logits"} for i, names in enumerate(MIXED_BATCHES)]
    for i, t in enumerate(mixed):
        logits[f"mixed_{i}_logits_shape"] = list(t.shape)
        logits[f"mixed_{i}_logits"] = f32_list(t)
    write_json(case_dir / "logits.json", logits)

    # each mixed row equals that row of the whole batch run with the row's adapter alone (or the base)
    row_vs_single = {}
    for i, names in enumerate(MIXED_BATCHES):
        row_vs_single[f"mixed_{i}"] = max(float((mixed[i][r] - single[n][r]).abs().max()) for r, n in enumerate(names))

    # reload from disk and reproduce every stored tensor
    rb = load_base(model_cls, base_dir)
    rp = PeftModel.from_pretrained(rb, str(case_dir / "a"), adapter_name="a")
    rp.load_adapter(str(case_dir / "b"), adapter_name="b")
    rp.eval()
    reload = {"reload_max_abs_diff_base": max_diff(run_model(load_base(model_cls, base_dir), ids, mask, "b"), base_logits)}
    for a in ("a", "b"):
        rp.set_adapter(a)
        reload[f"reload_max_abs_diff_{a}"] = max_diff(run_model(rp, ids, mask, a), single[a])
    rp.set_adapter("a")
    for i, names in enumerate(MIXED_BATCHES):
        reload[f"reload_max_abs_diff_mixed_{i}"] = max_diff(run_model(rp, ids, mask, "m", adapter_names=names), mixed[i])

    meta = {
        "case": name, "versions": versions(),
        "seeds": {"model": SEED_MODEL, "inputs": SEED_INPUTS, "adapter": SEED_ADAPTER},
        "model_class": model_cls.__name__, "base_case": base_case, "attn_implementation": ATTN_IMPL,
        "dtype": "float32", "inputs": input_desc, "randomized_params": rand_names,
        "adapter_keys": {a: saved_keys(case_dir / a / "adapter_model.safetensors") for a in ("a", "b")},
        "adapter_config": {a: json.loads((case_dir / a / "adapter_config.json").read_text()) for a in ("a", "b")},
        "mixed_batches": MIXED_BATCHES,
        "mixed_row_vs_single_adapter_max_abs_diff": row_vs_single,
        "max_abs_diff_a_vs_base": max_diff(single["a"], base_logits),
        "max_abs_diff_b_vs_base": max_diff(single["b"], base_logits),
        "max_abs_diff_a_vs_b": max_diff(single["a"], single["b"]),
        "max_abs_diff_adapter_vs_base": max_diff(single["a"], base_logits),
        **reload,
        "reload_reproduces_logits": all(v is not None and v <= 1e-6 for v in reload.values()),
        "notes": [
            f"base/ is the committed base of '{base_case}' (not repeated here).",
            "a/ and b/: PeftModel.save_pretrained of one PeftModel holding adapters 'a' and 'b' (HF writes every "
            "adapter not named 'default' into <dir>/<name>/). Load with PeftModel.from_pretrained(base, 'a', "
            "adapter_name='a') + load_adapter('b', adapter_name='b'). Keys inside carry no adapter name.",
            "logits.json: base_logits (no adapter), a_logits / b_logits (whole batch with set_adapter(a|b)), and "
            "mixed_<i>_logits = model(input_ids, attention_mask, adapter_names=mixed_batches[i].adapter_names) with "
            "'a' the active adapter (the active adapter does not matter with adapter_names). Row r of a mixed batch "
            "equals row r of the single-adapter run of its adapter (mixed_row_vs_single_adapter_max_abs_diff).",
            *notes,
        ],
    }
    write_json(case_dir / "meta.json", meta)


def case_llama_mixed_batch(out):
    mixed_batch_case(
        out, "llama_mixed_batch", LlamaForCausalLM, "llama_lora",
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        LoraConfig(r=2, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "o_proj", "down_proj"],
                   task_type="CAUSAL_LM"),
        inputs_left_padded(3),
        ["a: LoRA r=4 alpha=8 (scaling 2) on q_proj,v_proj; b: r=2 alpha=6 (scaling 3) on q_proj,k_proj,o_proj,"
         "down_proj (q_proj has both, so one layer serves rows of different adapters).",
         "Row 2 LEFT padded (positions not derived from the mask, as in llama_lora_padded). Logits at pad query "
         "positions (row 2, positions 0..2) are implementation-defined: compare only attention_mask == 1."])


def case_bert_mixed_batch(out):
    mixed_batch_case(
        out, "bert_mixed_batch", BertForSequenceClassification, "bert_lora",
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"], task_type="SEQ_CLS"),
        LoraConfig(r=2, lora_alpha=6, lora_dropout=0.0, target_modules=["key", "intermediate.dense"],
                   task_type="SEQ_CLS"),
        inputs_right_padded(2),
        ["a: LoRA r=4 alpha=8 on query,value; b: r=2 alpha=6 on key,intermediate.dense. SEQ_CLS: each adapter has "
         "its own classifier copy (modules_to_save, randomised, saved as base_model.model.classifier.*); with "
         "adapter_names the classifier is also chosen per row ('__base__' rows use the base classifier).",
         "Row 2 RIGHT padded; logits are [2, 2] (one per row)."])


def case_llama_ia3(out):
    name = "llama_ia3"
    cfg = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"],
                    task_type="CAUSAL_LM")
    make_case(out, name, LlamaForCausalLM, llama_config(2), cfg, inputs_full(), merge=True, notes=[
        "IA3: k_proj/v_proj scale the OUTPUT (ia3_l shape [out, 1]); down_proj is a feedforward module and scales "
        "the INPUT (ia3_l shape [1, in])."])


def case_gpt2_two_adapters(out):
    name = "gpt2_two_adapters"
    case_dir = out / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    ids, mask, input_desc = inputs_full()
    cfg1 = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True,
                      task_type="CAUSAL_LM")
    cfg2 = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                      task_type="CAUSAL_LM")
    base = build_base(GPT2LMHeadModel, gpt2_config())
    base.save_pretrained(str(case_dir / "base"))
    base_logits = run_model(base, ids, mask, "base")
    model = get_peft_model(base, cfg1)
    model.add_adapter("second", cfg2)
    model.eval()
    rand_names = randomize(model)

    model.set_adapter("default")
    l_default = run_model(model, ids, mask, "adapter")
    model.set_adapter("second")
    l_second = run_model(model, ids, mask, "adapter")
    both_method = "base_model.set_adapter(['default', 'second'])"
    try:
        model.base_model.set_adapter(["default", "second"])
        l_both = run_model(model, ids, mask, "adapter")
    except Exception as e:  # fallback documented in meta
        both_method = f"add_weighted_adapter(cat) because set_adapter(list) failed: {e!r}"
        model.add_weighted_adapter(["default", "second"], [1.0, 1.0], "both", combination_type="cat")
        model.set_adapter("both")
        l_both = run_model(model, ids, mask, "adapter")
        model.delete_adapter("both")
    # additivity check: both - base == (default - base) + (second - base) only holds for c_attn-only effects in
    # layer 0; so just record the diffs.
    model.set_adapter("default")
    model.save_pretrained(str(case_dir / "adapter"), safe_serialization=True)

    write_json(case_dir / "input_ids.json", {"input_ids": ids, "attention_mask": mask})
    write_json(case_dir / "logits.json", {
        "case": name, "model_class": "GPT2LMHeadModel", "peft_type": "LORA",
        "base_logits_shape": list(base_logits.shape), "base_logits": f32_list(base_logits),
        "adapter_logits_shape": list(l_default.shape), "adapter_logits": f32_list(l_default),
        "second_logits_shape": list(l_second.shape), "second_logits": f32_list(l_second),
        "both_logits_shape": list(l_both.shape), "both_logits": f32_list(l_both),
    })

    rb = load_base(GPT2LMHeadModel, case_dir / "base")
    r_base = run_model(rb, ids, mask, "base")
    rp = PeftModel.from_pretrained(rb, str(case_dir / "adapter"))
    rp.load_adapter(str(case_dir / "adapter" / "second"), adapter_name="second")
    rp.eval()
    rp.set_adapter("default")
    r_default = run_model(rp, ids, mask, "adapter")
    rp.set_adapter("second")
    r_second = run_model(rp, ids, mask, "adapter")
    rp.base_model.set_adapter(["default", "second"])
    r_both = run_model(rp, ids, mask, "adapter")
    reload = {
        "reload_max_abs_diff_base": max_diff(r_base, base_logits),
        "reload_max_abs_diff_adapter": max_diff(r_default, l_default),
        "reload_max_abs_diff_second": max_diff(r_second, l_second),
        "reload_max_abs_diff_both": max_diff(r_both, l_both),
    }
    with open(case_dir / "adapter" / "adapter_config.json") as f:
        ac1 = json.load(f)
    with open(case_dir / "adapter" / "second" / "adapter_config.json") as f:
        ac2 = json.load(f)
    meta = {
        "case": name, "versions": versions(),
        "seeds": {"model": SEED_MODEL, "inputs": SEED_INPUTS, "adapter": SEED_ADAPTER},
        "model_class": "GPT2LMHeadModel", "attn_implementation": ATTN_IMPL, "dtype": "float32",
        "inputs": input_desc, "randomized_params": rand_names,
        "adapter_keys": saved_keys(case_dir / "adapter" / "adapter_model.safetensors"),
        "second_adapter_keys": saved_keys(case_dir / "adapter" / "second" / "adapter_model.safetensors"),
        "max_abs_diff_adapter_vs_base": max_diff(l_default, base_logits),
        "max_abs_diff_second_vs_base": max_diff(l_second, base_logits),
        "max_abs_diff_both_vs_base": max_diff(l_both, base_logits),
        "max_abs_diff_both_vs_adapter": max_diff(l_both, l_default),
        "max_abs_diff_both_vs_second": max_diff(l_second, l_both),
        "max_abs_diff_merged_vs_adapter": None,
        "both_active_method": both_method,
        **reload,
        "reload_reproduces_logits": all(v is not None and v <= 1e-6 for v in reload.values()),
        "adapter_config": ac1, "second_adapter_config": ac2,
        "notes": [
            "adapter/ holds 'default' at the root and 'second' in adapter/second/ (PeftModel.save_pretrained with "
            "several adapters). Keys inside each safetensors file carry no adapter name.",
            "logits.json: adapter_logits = 'default' only, second_logits = 'second' only, both_logits = both "
            "active at once (LoRA deltas of both adapters are summed in every targeted layer).",
        ],
    }
    write_json(case_dir / "meta.json", meta)


# --------------------------------------------------------------------------------------------
# ORIGINAL six cases (regenerated only on request)
# --------------------------------------------------------------------------------------------

def case_llama_lora(out):
    make_case(out, "llama_lora", LlamaForCausalLM, llama_config(2),
              LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                         task_type="CAUSAL_LM"), inputs_full(), merge=True)


def case_gpt2_lora(out):
    make_case(out, "gpt2_lora", GPT2LMHeadModel, gpt2_config(n_inner=None),
              LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True,
                         task_type="CAUSAL_LM"), inputs_full(), merge=True)


def case_bert_lora(out):
    make_case(out, "bert_lora", BertForSequenceClassification, bert_config(2),
              LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"],
                         task_type="SEQ_CLS"), inputs_full(), merge=True)


def case_gpt2_ia3(out):
    make_case(out, "gpt2_ia3", GPT2LMHeadModel, gpt2_config(n_inner=None),
              IA3Config(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"],
                        fan_in_fan_out=True, task_type="CAUSAL_LM"), inputs_full(), merge=True)


def case_gpt2_prompt(out):
    make_case(out, "gpt2_prompt", GPT2LMHeadModel, gpt2_config(n_inner=None),
              PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="RANDOM"),
              inputs_full(), merge=False)


def case_gpt2_prefix(out):
    make_case(out, "gpt2_prefix", GPT2LMHeadModel, gpt2_config(n_inner=None),
              PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=False),
              inputs_full(), merge=False)


ORIGINAL_CASES = {
    "llama_lora": case_llama_lora,
    "gpt2_lora": case_gpt2_lora,
    "bert_lora": case_bert_lora,
    "gpt2_ia3": case_gpt2_ia3,
    "gpt2_prompt": case_gpt2_prompt,
    "gpt2_prefix": case_gpt2_prefix,
}

NEW_CASES = {
    "llama_lora_padded": case_llama_lora_padded,
    "qwen2_lora": case_qwen2_lora,
    "mistral_lora": case_mistral_lora,
    "gpt2_lora_padded": case_gpt2_lora_padded,
    "bert_tokcls_lora": case_bert_tokcls_lora,
    "bert_prompt": case_bert_prompt,
    "llama_prompt_text": case_llama_prompt_text,
    "llama_prefix": case_llama_prefix,
    "llama_ia3": case_llama_ia3,
    "gpt2_two_adapters": case_gpt2_two_adapters,
    "bert_prefix": case_bert_prefix,
    "bert_prefix_proj": case_bert_prefix_proj,
    "bert_tokcls_prefix": case_bert_tokcls_prefix,
    "bert_tokcls_prefix_proj": case_bert_tokcls_prefix_proj,
    "llama_mixed_batch": case_llama_mixed_batch,
    "bert_mixed_batch": case_bert_mixed_batch,
}

ALL_CASES = {**ORIGINAL_CASES, **NEW_CASES}


# Cases whose failure is recorded (SKIPPED.json in the output root) instead of failing the run.
SKIPPABLE = {"llama_prefix"}


def _reexec_with_fixed_hash_seed():
    """peft expands target_modules='all-linear' into a Python set; its iteration order (and so the list
    saved in adapter_config.json) depends on PYTHONHASHSEED. Re-exec with a fixed seed for byte-stable output."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output root (default: {DEFAULT_OUT})")
    ap.add_argument("--case", action="append", default=[], help="case to (re)generate; repeatable")
    ap.add_argument("--all", action="store_true", help="new cases AND the 6 original cases")
    ap.add_argument("--list", action="store_true", help="list case names and exit")
    args = ap.parse_args(argv)

    if args.list:
        for n in NEW_CASES:
            print(f"{n}\tnew")
        for n in ORIGINAL_CASES:
            print(f"{n}\toriginal (only with --case/--all)")
        return 0

    if args.case:
        unknown = [c for c in args.case if c not in ALL_CASES]
        if unknown:
            ap.error(f"unknown case(s): {unknown}; see --list")
        todo = args.case
    elif args.all:
        todo = list(ALL_CASES)
    else:
        todo = list(NEW_CASES)

    args.out.mkdir(parents=True, exist_ok=True)
    print("versions:", json.dumps(versions()))
    failed = []
    skipped = {}
    for n in todo:
        print(f"== {n}", flush=True)
        try:
            ALL_CASES[n](args.out)
            with open(args.out / n / "meta.json") as f:
                m = json.load(f)
            print(f"   adapter-vs-base={m.get('max_abs_diff_adapter_vs_base')} "
                  f"merged-vs-adapter={m.get('max_abs_diff_merged_vs_adapter')} "
                  f"reload_ok={m.get('reload_reproduces_logits')}")
        except Exception as e:
            traceback.print_exc()
            if n in SKIPPABLE:
                shutil.rmtree(args.out / n, ignore_errors=True)
                skipped[n] = {"error": repr(e), "traceback": traceback.format_exc(), "versions": versions()}
            else:
                failed.append(n)
    skip_file = args.out / "SKIPPED.json"
    if skipped:
        old = json.loads(skip_file.read_text()) if skip_file.exists() else {}
        old.update(skipped)
        write_json(skip_file, old, indent=1)
        print("SKIPPED (recorded in SKIPPED.json):", list(skipped))
    elif skip_file.exists():
        old = {k: v for k, v in json.loads(skip_file.read_text()).items() if k not in todo}
        if old:
            write_json(skip_file, old, indent=1)
        else:
            skip_file.unlink()
    if failed:
        print("FAILED:", failed)
        return 1
    return 0


if __name__ == "__main__":
    _reexec_with_fixed_hash_seed()
    sys.exit(main())
