"""Makes the AdapterHub bottleneck-adapter fixtures under peft-adapters/src/test/resources/fixtures/adapterhub/.

Run with the AdapterHub venv (AdapterHub `adapters` 1.2.0 + transformers 4.57.6; see shared/pyref/README.md):

    /work/A/bin/python peft-adapters/src/test/python/make_adapterhub_fixtures.py

What it writes (all models tiny: 2 layers, hidden 32, vocab 100; attn_implementation="eager"):

    bases/<arch>/                      config.json + model.safetensors of a random base (bert seq-cls 3 labels,
                                       gpt2 and llama causal LM); all dropouts 0 so training steps are deterministic
    <arch>_<preset>/adapter/           AdapterHub's save_adapter directory (adapter_config.json,
                                       adapter.safetensors, for bert also head_config.json + model_head.safetensors)
    <arch>_<preset>/logits.json        base_logits, adapter_logits (+ _shape) for input_ids.json's ids and mask
    <arch>_<preset>/input_ids.json     input_ids, attention_mask (row 1 right-padded)
                                       presets: seq_bn, double_seq_bn, par_bn, bert_scaled_par_bn (learned scaling),
                                       <arch>_custom (every other supported BnConfig option, see CUSTOM)
    bert_stack/                        a/ (seq_bn) and b/ (double_seq_bn), logits of AdapterHub's Stack("a", "b")
    bert_seq_bn_train/                 initial/ (AdapterHub dir, bert init, seed 3), data.json (ids, labels),
                                       losses.json: 5 SGD steps (lr 0.1, batch 2, no clipping) of train_adapter
                                       (adapter + classifier trainable, as AdapterHub's train_adapter leaves them)
    roundtrip/                         with --check DIR: AdapterHub loads a peft4j-written AdapterHub directory and
                                       writes the logits it computes (see BottleneckParityTest)

Added for issue 12 (run with --new to make only these; the older cases stay as they are):

    <case>/adapter/pytorch_adapter.bin AdapterHub's default (torch pickle) save next to every case's safetensors, so
                                       both forms are checked (pytorch_model_head.bin too for bert)
    <arch>_unipelt/                    UniPELTConfig (prefix 10 tokens, seq_bn r 16, LoRA r 8 alpha 2, all gated) with
                                       bottleneck_size 8 instead of 512 (file size); union adapter_config.json
    <arch>_mam/                        MAMConfig (prefix 30 tokens + par_bn) with bottleneck_size 8 instead of 800
                                       (gpt2: prefix 20, its causal-mask buffer holds n_positions 32)
    <arch>_union_custom/               a ConfigUnion of every other prefix/LoRA option (flat prefix, per-key/value gates,
                                       leave_out, LoRA on q, k, v, intermediate and output, ungated bottleneck)
    <arch>_seq_bn_inv/                 seq_bn_inv: Pfeiffer + NICE invertible adapter on the embeddings
    bert_double_seq_bn_inv/            double_seq_bn_inv (Houlsby + NICE)
    bert_unipelt_train/                initial/ (AdapterHub's pickle save of UniPELT with prefix 4 tokens, bottleneck 4,
                                       AdapterHub's init, seed 4), data.json, losses.json: 5 SGD steps as bert_seq_bn_train
    union_defaults.json                AdapterHub's to_dict() of UniPELTConfig(), MAMConfig(), seq_bn_inv
    <case>/ (no_ln_after cases)        with --no-ln-after (only these): original_ln_after false, both weight forms
                                       (see NO_LN_AFTER): <arch>_seq_bn_no_ln_after (Pfeiffer, residual_before_ln
                                       false, as AdapterHub advises), <arch>_par_bn_no_ln_after (parallel at both
                                       sites), bert_double_seq_bn_no_ln_after (Houlsby, original_ln_before +
                                       residual_before_ln post_add), and bert_stack_no_ln_after/: a/ (seq_bn,
                                       original_ln_after false) and b/ (double_seq_bn), logits of AdapterHub's
                                       Stack("a", "b") and Stack("b", "a") (the last adapter's post_forward decides)
                                       and bert_union_no_ln_after/: a ConfigUnion of prefix tuning (2 tokens,
                                       bottleneck 2), that seq_bn and LoRA r 2 (three methods active at once)
    roundtrip/<case>.json              with --check DIR --arch ARCH [--name NAME] --digests: AdapterHub's logits of a
                                       peft4j-written directory (UnionParityTest writes it with -Dpeft4j.adapterhub.write=true),
                                       AdapterHub's missing/unexpected keys (none, else it fails) and the SHA-256 of every
                                       file it loaded (the test checks peft4j writes those bytes; the directory is deleted)

Adapter weights of the logits cases are drawn N(0, 0.3) after add_adapter (AdapterHub's inits are near zero or zero),
so the comparison is meaningful. The safetensors files are AdapterHub's own save; where it cannot save safetensors
(tied keys with ln_before: the *_custom cases) the pickle is converted with torch, keeping both tied keys.
"""
import argparse
import json
import os
import shutil
import sys

import torch

import adapters
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "resources", "fixtures", "adapterhub")
IDS = [[5, 17, 42, 8, 99, 23, 61, 3], [11, 2, 77, 31, 50, 9, 0, 0]]
MASK = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]]
PRESETS = ["seq_bn", "double_seq_bn", "par_bn"]
# every other BnConfig option peft4j supports, on one adapter each (ln_before has AdapterHub's tied keys)
CUSTOM = {
    "bert": dict(mh_adapter=True, output_adapter=True, reduction_factor={"0": 8, "default": 16}, non_linearity="gelu",
                 original_ln_before=True, ln_before=True, ln_after=True, residual_before_ln="post_add",
                 use_gating=True, scaling="channel"),
    "gpt2": dict(mh_adapter=True, output_adapter=False, reduction_factor=4, non_linearity="tanh",
                 original_ln_before=True, ln_after=True, adapter_residual_before_ln=True, residual_before_ln=False,
                 leave_out=[0], scaling=0.5),
    "llama": dict(mh_adapter=True, output_adapter=True, reduction_factor=8, non_linearity="gelu_new", is_parallel=True,
                  ln_before=True, ln_after=True, use_gating=True, init_weights="houlsby"),
}


# original_ln_after: false: the adapter's output ends the sub-block (no residual add, no LayerNorm of the model)
NO_LN_AFTER = {
    "seq_bn_no_ln_after": ("seq_bn", dict(original_ln_after=False, residual_before_ln=False)),
    "par_bn_no_ln_after": ("par_bn", dict(original_ln_after=False, mh_adapter=True, reduction_factor=16)),
    "double_seq_bn_no_ln_after": ("double_seq_bn", dict(original_ln_after=False, original_ln_before=True,
                                                        residual_before_ln="post_add", reduction_factor=8)),
}


def make_base(arch):
    torch.manual_seed({"bert": 1, "gpt2": 2, "llama": 3}[arch])
    if arch == "bert":
        cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, initializer_range=0.2)
        cfg._attn_implementation = "eager"
        m = BertForSequenceClassification(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2)
        cfg._attn_implementation = "eager"
        m = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32,
                          initializer_range=0.2)
        cfg._attn_implementation = "eager"
        m = LlamaForCausalLM(cfg)
    return m.eval()


def load_base(arch):
    cls = {"bert": BertForSequenceClassification, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[arch]
    m = cls.from_pretrained(os.path.join(ROOT, "bases", arch), attn_implementation="eager").eval()
    m.config._name_or_path = "tiny-" + arch  # written as model_name (not this machine's path)
    return m


def logits(m, ids=IDS, mask=MASK):
    with torch.no_grad():
        return m(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def save_adapterhub(m, out, name):
    if os.path.isdir(out):
        shutil.rmtree(out)
    try:
        m.save_adapter(out, name, use_safetensors=True)
    except Exception as e:  # tied keys (ln_before): save the pickle, convert it with torch
        print("safetensors save failed (%s); converting the pickle" % e, file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
        m.save_adapter(out, name)
        from safetensors.torch import save_file
        for pt, st in [("pytorch_adapter.bin", "adapter.safetensors"), ("pytorch_model_head.bin", "model_head.safetensors")]:
            p = os.path.join(out, pt)
            if os.path.exists(p):
                sd = torch.load(p, weights_only=True)
                save_file({k: v.clone().contiguous() for k, v in sd.items()}, os.path.join(out, st), {"format": "pt"})
                os.remove(p)


def make_cases(arch):
    for preset in PRESETS + (["scaled_par_bn"] if arch == "bert" else []) + ["custom"]:
        m = load_base(arch)
        base = logits(m)
        adapters.init(m)
        config = "par_bn" if preset == "scaled_par_bn" else preset
        kwargs = {"scaling": "learned"} if preset == "scaled_par_bn" else {}
        cfg = adapters.BnConfig(**CUSTOM[arch]) if preset == "custom" else adapters.AdapterConfig.load(config, **kwargs)
        m.add_adapter("bn", config=cfg)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".adapters.bn." in n:
                    one = n.endswith("scaling") or ("norm" in n and n.endswith("weight")) or ".adapter_down.0.weight" in n and p.dim() == 1
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if one else 0.0))
        m.set_active_adapters("bn")
        m.eval()
        out = logits(m)
        case = os.path.join(ROOT, "%s_%s" % (arch, preset))
        os.makedirs(case, exist_ok=True)
        save_adapterhub(m, os.path.join(case, "adapter"), "bn")
        dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
        dump(os.path.join(case, "logits.json"), {"case": os.path.basename(case), "base": arch, "preset": preset,
                                                 "base_logits": base.tolist(), "base_logits_shape": list(base.shape),
                                                 "adapter_logits": out.tolist(), "adapter_logits_shape": list(out.shape)})
        print(case, "max|adapter - base| = %.3g" % (out - base).abs().max().item())


def make_no_ln_after_cases():
    for arch in ["bert", "gpt2", "llama"]:
        for preset, (config, kwargs) in NO_LN_AFTER.items():
            if preset.startswith("double") and arch != "bert":
                continue
            m = load_base(arch)
            base = logits(m)
            adapters.init(m)
            m.add_adapter("bn", config=adapters.AdapterConfig.load(config, **kwargs))
            g = torch.Generator().manual_seed(17)
            with torch.no_grad():
                for n, p in m.named_parameters():
                    if ".adapters.bn." in n:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if n.endswith("scaling") else 0.0))
            m.set_active_adapters("bn")
            m.eval()
            out = logits(m)
            case = os.path.join(ROOT, "%s_%s" % (arch, preset))
            os.makedirs(case, exist_ok=True)
            save_both(m, os.path.join(case, "adapter"), "bn")
            if arch != "bert":  # the static LM head equals the base's: not needed to load
                for f in ["head_config.json", "model_head.safetensors", "pytorch_model_head.bin"]:
                    if os.path.exists(os.path.join(case, "adapter", f)):
                        os.remove(os.path.join(case, "adapter", f))
            dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
            dump(os.path.join(case, "logits.json"), {"case": os.path.basename(case), "base": arch, "preset": preset,
                                                     "config": dict(kwargs, base_config=config),
                                                     "adapter_moves_logits_by": (out - base).abs().max().item(),
                                                     "adapter_logits": rounded(out.tolist()),
                                                     "adapter_logits_shape": list(out.shape)})
            print(case, "max|adapter - base| = %.3g" % (out - base).abs().max().item())


def make_union_no_ln_after():
    A = adapters
    m = load_base("bert")
    base = logits(m)
    adapters.init(m)
    m.add_adapter("u", config=A.ConfigUnion(
        A.PrefixTuningConfig(prefix_length=2, bottleneck_size=2),
        A.AdapterConfig.load("seq_bn", original_ln_after=False, residual_before_ln=False),
        A.LoRAConfig(r=2, alpha=4)))
    g = torch.Generator().manual_seed(23)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".u." in n or n.endswith(".u.weight") or n.endswith(".u.bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    m.set_active_adapters("u")
    m.eval()
    out = logits(m)
    case = os.path.join(ROOT, "bert_union_no_ln_after")
    os.makedirs(case, exist_ok=True)
    save_adapterhub(m, os.path.join(case, "adapter"), "u")  # safetensors only (unions' pickles are checked elsewhere)
    dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
    dump(os.path.join(case, "logits.json"), {"case": "bert_union_no_ln_after", "base": "bert",
                                             "adapter_moves_logits_by": (out - base).abs().max().item(),
                                             "adapter_logits": rounded(out.tolist()),
                                             "adapter_logits_shape": list(out.shape)})
    print(case, "max|adapter - base| = %.3g" % (out - base).abs().max().item())


def make_stack_no_ln_after():
    m = load_base("bert")
    adapters.init(m)
    m.add_adapter("a", config=adapters.AdapterConfig.load("seq_bn", original_ln_after=False, residual_before_ln=False))
    m.add_adapter("b", config="double_seq_bn")
    g = torch.Generator().manual_seed(19)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".adapters." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    m.eval()
    out = {}
    for order in [("a", "b"), ("b", "a")]:
        m.set_active_adapters(adapters.composition.Stack(*order))
        out["".join(order)] = logits(m)
    case = os.path.join(ROOT, "bert_stack_no_ln_after")
    os.makedirs(case, exist_ok=True)
    for n in ["a", "b"]:
        save_adapterhub(m, os.path.join(case, n), n)
    dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
    dump(os.path.join(case, "logits.json"), {"case": "bert_stack_no_ln_after",
                                             "ab_logits": out["ab"].tolist(), "ab_logits_shape": list(out["ab"].shape),
                                             "ba_logits": out["ba"].tolist(), "ba_logits_shape": list(out["ba"].shape)})
    print(case, "max|Stack(a, b) - Stack(b, a)| = %.3g" % (out["ab"] - out["ba"]).abs().max().item())


def save_both(m, out, name):
    """AdapterHub's pickle save (its default) and safetensors (its own, or converted from the pickle with both tied
    keys where its safetensors save refuses shared tensors) in one directory."""
    save_adapterhub(m, out, name)
    tmp = out + ".pickle"
    shutil.rmtree(tmp, ignore_errors=True)
    m.save_adapter(tmp, name)
    for f in ["pytorch_adapter.bin", "pytorch_model_head.bin"]:
        if os.path.exists(os.path.join(tmp, f)):
            shutil.copy(os.path.join(tmp, f), os.path.join(out, f))
    shutil.rmtree(tmp)


def add_pickles():
    """Adds AdapterHub's pytorch_adapter.bin to the older cases (their safetensors files stay as they are)."""
    cases = ["%s_%s" % (a, p) for a in ["bert", "gpt2", "llama"] for p in PRESETS + ["custom"]] + ["bert_scaled_par_bn"]
    for case in cases:
        arch = case.split("_")[0]
        m = load_base(arch)
        adapters.init(m)
        d = os.path.join(ROOT, case, "adapter")
        name = m.load_adapter(d, set_active=True, use_safetensors=True)
        tmp = d + ".pickle"
        shutil.rmtree(tmp, ignore_errors=True)
        m.save_adapter(tmp, name)
        # the causal LM head pickle equals the base's lm_head (13 kB): only bert's classifier head is kept
        for f in ["pytorch_adapter.bin"] + (["pytorch_model_head.bin"] if arch == "bert" else []):
            if os.path.exists(os.path.join(tmp, f)):
                shutil.copy(os.path.join(tmp, f), os.path.join(d, f))
        shutil.rmtree(tmp)
        print(case, "pickle added")


def union_configs(arch):
    A = adapters
    out = {
        "unipelt": A.UniPELTConfig(prefix_tuning=A.PrefixTuningConfig(prefix_length=10, bottleneck_size=16)),
        # GPT-2's eager causal mask is an n_positions (32) buffer: 30 prefix + 8 tokens do not fit, so 20 there
        "mam": A.MAMConfig(prefix_tuning=A.PrefixTuningConfig(bottleneck_size=8,
                                                              prefix_length=20 if arch == "gpt2" else 30)),
        "union_custom": A.ConfigUnion(
            A.PrefixTuningConfig(flat=True, prefix_length=3, use_gating=True, shared_gating=False, leave_out=[0]),
            A.DoubleSeqBnConfig(reduction_factor=8),
            A.LoRAConfig(r=2, alpha=4, attn_matrices=["q", "k", "v"], intermediate_lora=True, output_lora=True,
                         use_gating=True, leave_out=[1])),
        "seq_bn_inv": A.AdapterConfig.load("seq_bn_inv"),
    }
    if arch == "bert":
        out["double_seq_bn_inv"] = A.AdapterConfig.load("double_seq_bn_inv")
    return out


def rounded(x):
    return [rounded(v) for v in x] if isinstance(x, list) else round(x, 6)


def make_union_cases(arch):
    for preset, cfg in union_configs(arch).items():
        m = load_base(arch)
        base = logits(m)
        adapters.init(m)
        m.add_adapter("u", config=cfg)
        g = torch.Generator().manual_seed(13)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".u." in n or n.endswith(".u.weight") or n.endswith(".u.bias"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        m.set_active_adapters("u")
        m.eval()
        out = logits(m)
        case = os.path.join(ROOT, "%s_%s" % (arch, preset))
        os.makedirs(case, exist_ok=True)
        save_both(m, os.path.join(case, "adapter"), "u")
        if arch != "bert":  # the static LM head equals the base's: not needed to load (and 13 kB per form)
            for f in ["head_config.json", "model_head.safetensors", "pytorch_model_head.bin"]:
                if os.path.exists(os.path.join(case, "adapter", f)):
                    os.remove(os.path.join(case, "adapter", f))
        dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
        # 6 decimals (the parity bound is 1e-4); the base logits are those of the older cases of this arch
        dump(os.path.join(case, "logits.json"), {"case": os.path.basename(case), "base": arch, "preset": preset,
                                                 "adapter_moves_logits_by": (out - base).abs().max().item(),
                                                 "adapter_logits": rounded(out.tolist()),
                                                 "adapter_logits_shape": list(out.shape)})
        print(case, "max|adapter - base| = %.3g" % (out - base).abs().max().item())


def make_train_union():
    """5 SGD steps of UniPELT on BERT seq-cls from AdapterHub's own init (seed 4), saved as its default pickle."""
    m = load_base("bert")
    adapters.init(m)
    torch.manual_seed(4)
    A = adapters
    m.add_adapter("u", config=A.UniPELTConfig(prefix_tuning=A.PrefixTuningConfig(prefix_length=4, bottleneck_size=4)))
    case = os.path.join(ROOT, "bert_unipelt_train")
    shutil.rmtree(case, ignore_errors=True)
    os.makedirs(case)
    m.save_adapter(os.path.join(case, "initial"), "u")  # pytorch_adapter.bin + pytorch_model_head.bin
    m.train_adapter("u")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 100, (10, 6), generator=g)
    labels = torch.randint(0, 3, (10,), generator=g)
    params = [p for p in m.parameters() if p.requires_grad]
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    losses = []
    for step in range(5):
        b = slice(2 * step, 2 * step + 2)
        out = m(input_ids=ids[b], attention_mask=torch.ones_like(ids[b]), labels=labels[b])
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    m.eval()
    after = logits(m, ids[:2].tolist(), [[1] * 6] * 2)
    dump(os.path.join(case, "data.json"), {"input_ids": ids.tolist(), "labels": labels.tolist()})
    dump(os.path.join(case, "losses.json"), {"losses": losses, "lr": 0.1, "batch_size": 2, "steps": 5,
                                             "trainable": names, "after_logits": after.tolist(),
                                             "after_logits_shape": list(after.shape)})
    print(case, "losses", losses)


def make_defaults():
    A = adapters
    dump(os.path.join(ROOT, "union_defaults.json"), {
        "unipelt": A.UniPELTConfig().to_dict(), "mam": A.MAMConfig().to_dict(),
        "seq_bn_inv": A.AdapterConfig.load("seq_bn_inv").to_dict(),
        "double_seq_bn_inv": A.AdapterConfig.load("double_seq_bn_inv").to_dict(),
        "prefix_tuning": A.AdapterConfig.load("prefix_tuning").to_dict(),
        "lora": A.AdapterConfig.load("lora").to_dict()})


def make_stack():
    """Two adapters active at once: AdapterHub's Stack("a", "b") of a seq_bn and a double_seq_bn on BERT."""
    m = load_base("bert")
    base = logits(m)
    adapters.init(m)
    m.add_adapter("a", config="seq_bn")
    m.add_adapter("b", config="double_seq_bn")
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if ".adapters." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    m.set_active_adapters(adapters.composition.Stack("a", "b"))
    out = logits(m)
    case = os.path.join(ROOT, "bert_stack")
    os.makedirs(case, exist_ok=True)
    for n in ["a", "b"]:
        save_adapterhub(m, os.path.join(case, n), n)
    dump(os.path.join(case, "input_ids.json"), {"input_ids": IDS, "attention_mask": MASK})
    dump(os.path.join(case, "logits.json"), {"case": "bert_stack", "base_logits": base.tolist(),
                                             "base_logits_shape": list(base.shape), "adapter_logits": out.tolist(),
                                             "adapter_logits_shape": list(out.shape)})
    print(case, "max|stack - base| = %.3g" % (out - base).abs().max().item())


def make_train():
    m = load_base("bert")
    adapters.init(m)
    torch.manual_seed(3)
    m.add_adapter("bn", config="seq_bn")
    case = os.path.join(ROOT, "bert_seq_bn_train")
    os.makedirs(case, exist_ok=True)
    save_adapterhub(m, os.path.join(case, "initial"), "bn")
    m.train_adapter("bn")
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 100, (10, 6), generator=g)
    labels = torch.randint(0, 3, (10,), generator=g)
    params = [p for p in m.parameters() if p.requires_grad]
    names = [n for n, p in m.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    losses = []
    for step in range(5):
        b = slice(2 * step, 2 * step + 2)
        out = m(input_ids=ids[b], attention_mask=torch.ones_like(ids[b]), labels=labels[b])
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    m.eval()
    after = logits(m, ids[:2].tolist(), [[1] * 6] * 2)
    dump(os.path.join(case, "data.json"), {"input_ids": ids.tolist(), "labels": labels.tolist()})
    dump(os.path.join(case, "losses.json"), {"losses": losses, "lr": 0.1, "batch_size": 2, "steps": 5,
                                             "trainable": names, "after_logits": after.tolist(),
                                             "after_logits_shape": list(after.shape)})
    print(case, "losses", losses)


def check(dir_, arch, name, digests=False):
    """AdapterHub loads a directory peft4j wrote; its logits go to roundtrip/<case>.json."""
    m = load_base(arch)
    adapters.init(m)
    info = {}
    loaded = m.load_adapter(dir_, load_as=name, set_active=True, use_safetensors=True, loading_info=info)
    m.eval()
    out = logits(m)
    os.makedirs(os.path.join(ROOT, "roundtrip"), exist_ok=True)
    case = os.path.basename(os.path.normpath(dir_))
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(info.get("unexpected_keys", []))
    if missing or unexpected:
        raise SystemExit("%s: AdapterHub reports missing keys %s, unexpected keys %s" % (dir_, missing, unexpected))
    record = {"loaded": loaded, "adapter_logits": out.tolist(), "adapter_logits_shape": list(out.shape),
              "missing_keys": missing, "unexpected_keys": unexpected}
    if digests:  # the directory itself is not committed: the test checks that peft4j writes these exact bytes
        import hashlib
        record["adapter_logits"] = rounded(out.tolist())
        record["sha256"] = {f: hashlib.sha256(open(os.path.join(dir_, f), "rb").read()).hexdigest()
                            for f in sorted(os.listdir(dir_))}
    dump(os.path.join(ROOT, "roundtrip", case + ".json"), record)
    print("AdapterHub loaded", dir_, "as", loaded)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", help="a peft4j-written AdapterHub directory to load in AdapterHub")
    ap.add_argument("--arch", default="bert")
    ap.add_argument("--name", default="bn", help="the adapter name to load as (--check)")
    ap.add_argument("--new", action="store_true", help="make only the issue-12 additions")
    ap.add_argument("--digests", action="store_true",
                    help="with --check: record the files' SHA-256 and 6-decimal logits (the directory is not committed)")
    ap.add_argument("--no-ln-after", action="store_true", help="make only the original_ln_after: false cases")
    args = ap.parse_args()
    if args.no_ln_after:
        make_no_ln_after_cases()
        make_stack_no_ln_after()
        make_union_no_ln_after()
        return
    if args.check:
        check(args.check, args.arch, args.name, args.digests)
        return
    if args.new:
        add_pickles()
        for arch in ["bert", "gpt2", "llama"]:
            make_union_cases(arch)
        make_defaults()
        make_train_union()
        return
    for arch in ["bert", "gpt2", "llama"]:
        d = os.path.join(ROOT, "bases", arch)
        make_base(arch).save_pretrained(d, safe_serialization=True)
        make_cases(arch)
    make_stack()
    make_train()


if __name__ == "__main__":
    main()
