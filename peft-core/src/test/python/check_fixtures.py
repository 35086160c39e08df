#!/usr/bin/env python3
"""Sanity-check the hf-peft fixtures: layout complete, and reloading base + adapter (+ merged) from disk with
the installed transformers/peft reproduces the stored logits.

    python check_fixtures.py                 # every case dir under the default fixtures root
    python check_fixtures.py --case NAME     # repeatable
    python check_fixtures.py --tol 1e-6

Exit status 1 if a layout file is missing or a difference exceeds --tol. Cases whose meta.json records other
library versions than the installed ones (e.g. the original peft 0.7.1 / transformers 4.35 fixtures) are
reported but only fail with --strict-foreign.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import PeftModel  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_ROOT = (SCRIPT_DIR / ".." / "resources" / "fixtures" / "hf-peft").resolve()


def load_json(p):
    with open(p) as f:
        return json.load(f)


def logits(model, inp, **extra):
    kw = {"input_ids": torch.tensor(inp["input_ids"]), "attention_mask": torch.tensor(inp["attention_mask"])}
    if inp.get("token_type_ids") is not None:
        kw["token_type_ids"] = torch.tensor(inp["token_type_ids"])
    with torch.no_grad():
        return model(**kw, **extra).logits.float()


def stored(d, key):
    t = torch.tensor(d[key], dtype=torch.float32)
    assert list(t.shape) == d[key + "_shape"], f"{key}: shape {list(t.shape)} != {d[key + '_shape']}"
    return t


def diff(a, b):
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return float((a - b).abs().max())


def check_mixed_case(case_dir: Path, meta, lg):
    """Mixed-adapter batches: adapters a/ and b/, base_logits, a_logits, b_logits and mixed_<i>_logits."""
    problems, diffs = [], {}
    base_rel = f"../{lg['base_case']}/base"
    need = [f"{base_rel}/config.json", f"{base_rel}/model.safetensors", "input_ids.json"]
    need += [f"{a}/{f}" for a in lg["adapters"] for f in ("adapter_config.json", "adapter_model.safetensors")]
    problems += [f"missing {n}" for n in need if not (case_dir / n).exists()]
    for e in lg["mixed_batches"]:
        if e["key"] not in lg:
            problems.append(f"logits.json lacks {e['key']}")
    if problems:
        return problems, diffs, meta
    inp = load_json(case_dir / "input_ids.json")
    cls = getattr(transformers, lg["model_class"])
    attn = meta.get("attn_implementation", "eager")
    base = cls.from_pretrained(str(case_dir / base_rel), attn_implementation=attn, dtype=torch.float32).eval()
    diffs["base"] = diff(logits(base, inp), stored(lg, "base_logits"))
    first, *rest = lg["adapters"]
    pm = PeftModel.from_pretrained(base, str(case_dir / first), adapter_name=first)
    for a in rest:
        pm.load_adapter(str(case_dir / a), adapter_name=a)
    pm.eval()
    for a in lg["adapters"]:
        pm.set_adapter(a)
        diffs[a] = diff(logits(pm, inp), stored(lg, f"{a}_logits"))
    pm.set_adapter(first)
    for e in lg["mixed_batches"]:
        diffs[e["key"].removesuffix("_logits")] = diff(logits(pm, inp, adapter_names=e["adapter_names"]),
                                                       stored(lg, e["key"]))
    return problems, diffs, meta


def check_case(case_dir: Path):
    problems, diffs = [], {}
    meta = load_json(case_dir / "meta.json") if (case_dir / "meta.json").exists() else {}
    lg = load_json(case_dir / "logits.json") if (case_dir / "logits.json").exists() else {}
    if "mixed_batches" in lg:
        return check_mixed_case(case_dir, meta, lg)
    # a case with "base_case" reuses the committed base/ of that case
    base_rel = f"../{lg['base_case']}/base" if "base_case" in lg else "base"
    base_dir = case_dir / base_rel
    need = [f"{base_rel}/config.json", f"{base_rel}/model.safetensors", "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors", "input_ids.json", "logits.json", "meta.json"]
    if "prefix_encoder_keys" in meta:
        need.append("prefix_encoder.safetensors")
    has_merged = (case_dir / "merged").exists() or (case_dir / "merged_logits.json").exists()
    if has_merged:
        need += ["merged/config.json", "merged/model.safetensors", "merged_logits.json"]
    if "second_logits" in lg:
        need += ["adapter/second/adapter_config.json", "adapter/second/adapter_model.safetensors"]
    for n in need:
        if not (case_dir / n).exists():
            problems.append(f"missing {n}")
    for k in ("case", "model_class", "peft_type", "base_logits_shape", "base_logits", "adapter_logits_shape",
              "adapter_logits"):
        if k not in lg:
            problems.append(f"logits.json lacks {k}")
    if problems:
        return problems, diffs, meta

    inp = load_json(case_dir / "input_ids.json")
    cls = getattr(transformers, lg["model_class"])
    attn = meta.get("attn_implementation", "eager")
    base = cls.from_pretrained(str(base_dir), attn_implementation=attn, dtype=torch.float32).eval()
    diffs["base"] = diff(logits(base, inp), stored(lg, "base_logits"))
    pm = PeftModel.from_pretrained(base, str(case_dir / "adapter")).eval()
    if "second_logits" in lg:
        pm.load_adapter(str(case_dir / "adapter" / "second"), adapter_name="second")
        pm.set_adapter("default")
    diffs["adapter"] = diff(logits(pm, inp), stored(lg, "adapter_logits"))
    if "second_logits" in lg:
        pm.set_adapter("second")
        diffs["second"] = diff(logits(pm, inp), stored(lg, "second_logits"))
        pm.base_model.set_adapter(["default", "second"])
        diffs["both"] = diff(logits(pm, inp), stored(lg, "both_logits"))
    if has_merged:
        ml = load_json(case_dir / "merged_logits.json")
        merged = cls.from_pretrained(str(case_dir / "merged"), attn_implementation=attn, dtype=torch.float32).eval()
        diffs["merged"] = diff(logits(merged, inp), stored(ml, "merged_logits"))
        if pm.peft_config["default"].peft_type in ("LORA", "IA3") and "second_logits" not in lg:
            # merge in memory again and compare with the stored merged logits
            diffs["merge_again"] = diff(logits(pm.merge_and_unload().eval(), inp), stored(ml, "merged_logits"))
    return problems, diffs, meta


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--case", action="append", default=[])
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--merge-tol", type=float, default=1e-5,
                    help="tolerance for merge_again (re-merging in memory is not bit-exact)")
    ap.add_argument("--strict-foreign", action="store_true",
                    help="also fail on cases generated with other transformers/peft versions")
    args = ap.parse_args(argv)
    cases = args.case or sorted(p.name for p in args.root.iterdir() if (p / "meta.json").exists())
    print(f"torch {torch.__version__} transformers {transformers.__version__} peft {peft.__version__}")
    bad = 0
    ok_count = 0
    for c in cases:
        problems, diffs, meta = check_case(args.root / c)
        v = meta.get("versions", {})
        foreign = (v.get("transformers"), v.get("peft")) != (transformers.__version__, peft.__version__)
        fails = [k for k, d in diffs.items() if d > (args.merge_tol if k == "merge_again" else args.tol)]
        status = "OK"
        if problems or fails:
            status = "FAIL" if (not foreign or args.strict_foreign or problems) else "DIFF (foreign versions)"
        if status == "FAIL":
            bad += 1
        else:
            ok_count += 1
        tag = f" [made with transformers {v.get('transformers')}, peft {v.get('peft')}]" if foreign else ""
        print(f"{status:5s} {c}{tag}: " + ", ".join(f"{k}={d:.3g}" for k, d in diffs.items()) +
              (f" problems={problems}" if problems else ""))
    print(f"{ok_count} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
