#!/usr/bin/env python3
"""Reverse parity: adapters and merged checkpoints written by peft4j, read by the reference library.

The Java half (peft-examples test sources, io.github.peft4j.examples.reverse.ReverseParity) writes one directory
per case into a work directory:

    WORK/<case>/adapter/      adapter_config.json + adapter_model.safetensors written by peft4j
    WORK/<case>/merged/       the merged checkpoint written by peft4j (methods that merge)
    WORK/<case>/case.json     the case, the base directory, the inputs and peft4j's logits

This script loads every case in HF PEFT (``PeftModel.from_pretrained`` on the ``AutoModelFor<task>`` the adapter's
task_type names, as ``AutoPeftModelFor*`` does) and the merged checkpoints in transformers, compares the logits with
peft4j's (bound 1e-4), checks that HF's own state dict of the loaded adapter has exactly the keys, shapes and dtypes
of the peft4j file (and the same values), re-saves the adapter with HF PEFT, and writes what the reference library
read and produced to ``peft-core/src/test/resources/fixtures/hf-peft-reverse/<case>.json``. CI
(ReverseParityTest) re-writes each adapter with peft4j and checks it against those fixtures without Python.

Usage (scripts/reverse-parity.sh runs both halves):
    python reverse_parity.py encoder             # (re)make fixtures/hf-peft-reverse/bert_encoder (bare BertModel)
    python reverse_parity.py check WORK [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import (  # noqa: E402
    AutoPeftModelForCausalLM,
    AutoPeftModelForSequenceClassification,
    AutoPeftModelForTokenClassification,
    PeftModel,
)
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertModel,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
FIXTURES = HERE.parent / "resources" / "fixtures"
OUT = FIXTURES / "hf-peft-reverse"
BOUND = 1e-4
AUTO = {
    "CAUSAL_LM": AutoModelForCausalLM,
    "SEQ_CLS": AutoModelForSequenceClassification,
    "TOKEN_CLS": AutoModelForTokenClassification,
}
AUTO_PEFT = {
    "CAUSAL_LM": AutoPeftModelForCausalLM,
    "SEQ_CLS": AutoPeftModelForSequenceClassification,
    "TOKEN_CLS": AutoPeftModelForTokenClassification,
}
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def make_encoder() -> None:
    """A bare BertModel without pooler (the spam job's imported MiniLM layout) from the bert_lora base."""
    src = FIXTURES / "hf-peft" / "bert_lora" / "base"
    dst = OUT / "bert_encoder"
    model = BertModel.from_pretrained(src, add_pooling_layer=False, attn_implementation="eager")
    model.save_pretrained(dst, safe_serialization=True)
    print(f"wrote {dst}: {sorted(p.name for p in dst.iterdir())}")


def portable(config: dict) -> dict:
    """The config with paths inside this repository written relative to it (``<repo>/...``)."""
    out = dict(config)
    for k, v in config.items():
        if isinstance(v, str) and v.startswith(str(REPO) + os.sep):
            out[k] = "<repo>/" + os.path.relpath(v, REPO)
    return out


def tensors(file: Path) -> dict:
    out = {}
    with safe_open(str(file), framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k)
            out[k] = t
    return out


def header(ts: dict) -> dict:
    return {k: {"dtype": DTYPES[v.dtype], "shape": list(v.shape)} for k, v in sorted(ts.items())}


def classifier_rows(ts: dict) -> int | None:
    for k, v in ts.items():
        if k.endswith("classifier.weight"):
            return int(v.shape[0])
    return None


def rounded(t: torch.Tensor) -> list:
    return [float(f"{x:.8g}") for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def diff(a: torch.Tensor, values: list, shape: list) -> float:
    b = torch.tensor(values, dtype=torch.float32).reshape(shape)
    if list(a.shape) != list(shape):
        raise AssertionError(f"HF logits shape {list(a.shape)} != peft4j {shape}")
    return float((a.to(torch.float32) - b).abs().max())


def base_model(case: dict, task: str, labels: int | None, where: Path):
    cls = AUTO[task]
    kwargs = {"attn_implementation": "eager", "dtype": torch.float32}
    if labels is not None:
        kwargs["num_labels"] = labels
    return cls.from_pretrained(where, **kwargs).eval()


def check_case(d: Path, write: bool) -> dict:
    case = json.loads((d / "case.json").read_text())
    name = case["name"]
    adapter = d / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    task = config["task_type"]
    ours = tensors(adapter / "adapter_model.safetensors")
    labels = classifier_rows(ours) if task in ("SEQ_CLS", "TOKEN_CLS") else None
    ids = torch.tensor(case["input_ids"], dtype=torch.long)
    mask = torch.ones_like(ids)
    problems = []

    torch.manual_seed(0)
    base = base_model(case, task, labels, Path(case["base"]))
    model = PeftModel.from_pretrained(base, adapter).eval()  # validates the config (__post_init__) and loads
    hf_sd = get_peft_model_state_dict(model)
    if set(hf_sd) != set(ours):
        problems.append(f"keys: HF expects {sorted(set(hf_sd) - set(ours))} more, "
                        f"{sorted(set(ours) - set(hf_sd))} fewer")
    for k in sorted(set(hf_sd) & set(ours)):
        a, b = hf_sd[k], ours[k]
        if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
            problems.append(f"{k}: HF {a.dtype}{tuple(a.shape)} vs peft4j {b.dtype}{tuple(b.shape)}")
        elif not torch.equal(a, b):
            problems.append(f"{k}: HF holds other values than the file")
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        try:
            with model.disable_adapter():
                disabled = model(input_ids=ids, attention_mask=mask).logits
        except UnboundLocalError:
            # HF PEFT 0.21's disable_adapter() fails for prompt learning on non-generative models
            # (old_prepare_inputs_for_generation unbound): the base model without the virtual tokens instead
            disabled = model.get_base_model()(input_ids=ids, attention_mask=mask).logits
    # how much the adapter changes the output (non-trivial weights); the modules_to_save head of a bare encoder is
    # random when disabled in HF, so this is large there by construction
    tail = logits[:, -disabled.shape[1]:] if logits.dim() == 3 else logits  # causal-LM prompt logits keep the prompt
    effect = float((tail - disabled).abs().max())
    d_adapter = diff(logits, case["peft4j_logits"], case["peft4j_logits_shape"])
    d_reloaded = diff(logits, case["peft4j_reloaded_logits"], case["peft4j_reloaded_logits_shape"])

    # what a Python user does with an adapter directory alone: the base comes from base_model_name_or_path
    kwargs = {"attn_implementation": "eager", "dtype": torch.float32}
    if labels is not None:
        kwargs["num_labels"] = labels
    auto = AUTO_PEFT[task].from_pretrained(adapter, **kwargs).eval()
    with torch.no_grad():
        auto_logits = auto(input_ids=ids, attention_mask=mask).logits
    d_auto = diff(auto_logits, case["peft4j_logits"], case["peft4j_logits_shape"])

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        hf_config = json.loads((Path(tmp) / "adapter_config.json").read_text())
        hf_saved = header(tensors(Path(tmp) / "adapter_model.safetensors"))
    if hf_saved != header(ours):
        problems.append("HF's re-saved adapter file differs from peft4j's in keys, shapes or dtypes")
    missing = sorted(k for k in config if k not in hf_config)
    if missing:
        problems.append(f"config keys HF does not write: {missing}")

    result = {
        "name": name,
        "model": case["model"],
        "method": case["method"],
        "reference": f"HF PEFT {peft.__version__} / transformers {transformers.__version__} / torch "
                     f"{torch.__version__.split('+')[0]}",
        "base": case["base_relative"],
        "hf_model_class": type(base).__name__,
        "hf_peft_class": type(model).__name__,
        "num_labels": labels,
        "input_ids": case["input_ids"],
        "adapter_config": portable(config),
        "adapter_tensors": header(ours),
        "hf_saved_config": portable(hf_config),
        "hf_saved_tensors": hf_saved,
        "hf_logits_shape": list(logits.shape),
        "hf_logits": rounded(logits),
        "adapter_effect": effect,
        "max_diff": d_adapter,
        "max_diff_reloaded": d_reloaded,
        "max_diff_auto_peft_model": d_auto,
        "hf_auto_peft_class": type(auto).__name__,
    }
    if case.get("merge"):
        merged = base_model(case, task, labels, d / "merged")
        with torch.no_grad():
            m_logits = merged(input_ids=ids, attention_mask=mask).logits
            hf_merged = model.merge_and_unload()(input_ids=ids, attention_mask=mask).logits
        result["hf_merged_class"] = type(merged).__name__
        result["hf_merged_logits_shape"] = list(m_logits.shape)
        result["hf_merged_logits"] = rounded(m_logits)
        result["max_diff_merged"] = diff(m_logits, case["peft4j_merged_logits"], case["peft4j_merged_logits_shape"])
        result["max_diff_merged_vs_hf_merge"] = float((m_logits - hf_merged).abs().max())
    worst = max(v for k, v in result.items() if k.startswith("max_diff"))
    if worst >= BOUND:
        problems.append(f"max|diff| {worst:.3g} >= {BOUND}")
    result["problems"] = problems
    if write and not problems:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("encoder")
    c = sub.add_parser("check")
    c.add_argument("work", type=Path)
    c.add_argument("--no-write", action="store_true", help="compare only; do not update the fixtures")
    args = ap.parse_args()
    if args.cmd == "encoder":
        make_encoder()
        return 0
    torch.set_num_threads(1)
    failed = 0
    rows = []
    cases = sorted(p for p in args.work.iterdir() if (p / "case.json").is_file())
    own = [d for d in cases if json.loads((d / "case.json").read_text()).get("reference") == "none"]
    cases = [d for d in cases if d not in own]
    for d in own:
        print(f"{d.name}: no reference library (peft4j's own format; HF PEFT has no BitFit); "
              f"ReverseParityTest checks its round trip")
    for d in cases:
        try:
            r = check_case(d, not args.no_write)
        except Exception as e:  # one line per failing case, then go on
            failed += 1
            print(f"FAIL {d.name}: {type(e).__name__}: {e}")
            continue
        ok = not r["problems"]
        failed += 0 if ok else 1
        merged = f"{r['max_diff_merged']:.2g}" if "max_diff_merged" in r else ""
        rows.append(f"| {r['name']} | {r['model']} | {r['method']} | {r['hf_peft_class']} on {r['hf_model_class']} "
                    f"| {r['adapter_effect']:.2g} | {r['max_diff']:.2g} | {r['max_diff_auto_peft_model']:.2g} | {r['max_diff_reloaded']:.2g} | {merged} | {'loads' if ok else 'FAIL'} |")
        for p in r["problems"]:
            print(f"FAIL {r['name']}: {p}")
    print("| case | model | method | loaded by | adapter effect | adapter max\\|diff\\| | AutoPeftModel | reloaded by peft4j | merged (transformers) "
          "| |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"{len(cases) - failed} of {len(cases)} cases load in the reference library and match; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
