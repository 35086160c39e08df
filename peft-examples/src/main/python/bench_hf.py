"""The Hugging Face side of `peft4j bench`: the same LoRA / QLoRA training steps with transformers + peft (+ bitsandbytes).

Same workload as io.github.peft4j.examples.BenchCommand: randomly initialised model, fp32 on the CPU, batch 4,
LoRA r=8, alpha=16, dropout 0 (model dropouts 0 too), forward with labels = input ids (transformers' shifted
causal-LM loss), backward, torch.optim.AdamW(lr=1e-4, weight_decay=0), zero_grad; 3 untimed warm-up steps.
--config picks what is trained: lora (dense fp32 base), qlora (every nn.Linear but lm_head replaced by a
bitsandbytes Linear4bit, NF4, blocksize 64, double quantisation, fp32 compute), qlora-nodq (without double
quantisation), and -gc for gradient checkpointing (model.gradient_checkpointing_enable(use_reentrant=False)).
A 4-bit base is built on the meta device and materialised one linear layer at a time, each quantised at once, as
from_pretrained(quantization_config=...) quantises while loading, so the dense model never exists. bitsandbytes is
imported only for a 4-bit config (its source tree on PYTHONPATH, ../shared/pyref/README.md; its pure-PyTorch CPU
backend). The attention implementation is transformers' default (printed as "attn"; "sdpa" in transformers 5) unless
--attn is given. Prints one JSON object per shape and config with the fields peft4j prints; peak RSS is
resource.getrusage(RUSAGE_SELF).ru_maxrss (the process high-water mark so far).

    python bench_hf.py --shape llama-tiny,gpt2-tiny [--config lora,qlora-gc] [--steps N] [--warmup N] [--threads N]
        [--attn eager|sdpa]
"""
import argparse
import json
import resource
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

BATCH, RANK, ALPHA, LR, SEED = 4, 8, 16, 1e-4, 1234
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)

# name -> (model class, config, seq len, default steps, LoRA targets); must match BenchCommand.BenchShape
SHAPES = {
    "llama-tiny": (LlamaForCausalLM, lambda: LlamaConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4, vocab_size=128, max_position_embeddings=128,
                   rms_norm_eps=1e-6, tie_word_embeddings=False), 32, 200, ["q_proj", "v_proj"]),
    "gpt2-tiny": (GPT2LMHeadModel, lambda: GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=128,
                  **NO_DROPOUT), 32, 200, ["c_attn"]),
    "llama-small": (LlamaForCausalLM, lambda: LlamaConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, num_key_value_heads=12, vocab_size=50257, max_position_embeddings=2048,
                    rms_norm_eps=1e-6, tie_word_embeddings=False), 128, 5, ["q_proj", "v_proj"]),
    "gpt2-small": (GPT2LMHeadModel, lambda: GPT2Config(n_embd=768, n_layer=12, n_head=12, vocab_size=50257,
                   n_positions=1024, **NO_DROPOUT), 128, 5, ["c_attn"]),
    "llama-0.5b": (LlamaForCausalLM, lambda: LlamaConfig(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                   num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, max_position_embeddings=2048,
                   rms_norm_eps=1e-6, tie_word_embeddings=True), 64, 2, ["q_proj", "v_proj"]),
}

# name -> (4-bit base, double quantisation, gradient checkpointing); must match BenchCommand.BenchConfig
CONFIGS = {
    "lora": (False, False, False),
    "lora-gc": (False, False, True),
    "qlora": (True, True, False),
    "qlora-gc": (True, True, True),
    "qlora-nodq": (True, False, False),
}


def quantized_model(cls, config, double_quant):
    """The model with every nn.Linear but lm_head a bnb Linear4bit (NF4, blocks of 64), built one layer at a time."""
    import bitsandbytes as bnb

    with torch.device("meta"):
        model = cls(config)
    std = config.initializer_range
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and name != "lm_head":
                weight = torch.empty(child.out_features, child.in_features).normal_(0.0, std)
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.float32, compress_statistics=double_quant, quant_type="nf4",
                                      device="meta")
                q.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=double_quant,
                                             quant_type="nf4", blocksize=64).to("cpu")
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(torch.zeros(child.out_features), requires_grad=False)
                setattr(module, name, q)
                del weight
    # what is left (embeddings, norms, rotary buffers) is small: materialise and initialise it as transformers does
    for module in model.modules():
        for pname, p in list(module.named_parameters(recurse=False)):
            if p.is_meta:
                data = torch.ones(p.shape) if "norm" in type(module).__name__.lower() else torch.empty(p.shape).normal_(0.0, std)
                setattr(module, pname, torch.nn.Parameter(data, requires_grad=p.requires_grad))
    if hasattr(model, "model") and hasattr(model.model, "rotary_emb"):
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def base_bytes(model):
    """Bytes of the base weights as held: packed codes + absmax (+ nested absmax and offset) for 4-bit layers."""
    total, q_weights, q_bytes = 0, 0, 0
    seen = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        qs = getattr(p, "quant_state", None)
        if qs is None:
            total += p.numel() * p.element_size()
            continue
        b = p.numel() * p.element_size() + qs.absmax.numel() * qs.absmax.element_size()
        if qs.nested:
            b += qs.state2.absmax.numel() * qs.state2.absmax.element_size() + 4  # + the fp32 offset
        n = qs.shape[0] * qs.shape[1]
        q_weights += n
        q_bytes += b
        total += b
    return total, q_weights, q_bytes


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def measure(name, config_name, steps, warmup, attn):
    cls, make_config, seq, default_steps, targets = SHAPES[name]
    quantized, double_quant, checkpointing = CONFIGS[config_name]
    steps = steps or default_steps
    torch.manual_seed(SEED)
    config = make_config()
    if attn is not None:
        config._attn_implementation = attn
    model = quantized_model(cls, config, double_quant) if quantized else cls(config)
    total, q_weights, q_bytes = base_bytes(model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    peft = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=targets,
                                            fan_in_fan_out=name.startswith("gpt2")))
    trainable = [p for p in peft.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(SEED)
    vocab = model.config.vocab_size

    def step():
        ids = torch.randint(0, vocab, (BATCH, seq), generator=gen)
        loss = peft(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(warmup):
        loss = step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    ms = (time.perf_counter() - t0) * 1000.0 / steps
    return {"impl": "hf", "shape": name, "config": config_name, "ms_per_step": round(ms, 3), "tokens_per_s": round(BATCH * seq * 1000.0 / ms, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "steps": steps, "threads": torch.get_num_threads(), "batch": BATCH,
            "seq": seq, "trainable_params": sum(p.numel() for p in trainable), "last_loss": round(loss, 6),
            "attn": model.config._attn_implementation, "base_mb": round(total / 1048576.0, 1),
            "quantised_weights": q_weights, "quant_bits_per_weight": round(8.0 * q_bytes / q_weights, 4) if q_weights else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, help="comma-separated: " + ", ".join(SHAPES) + " or all")
    ap.add_argument("--config", default="lora", help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default=None, help="default: transformers' default")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    names = list(SHAPES) if a.shape == "all" else a.shape.split(",")
    for n in names:
        if n not in SHAPES:
            sys.exit(f"bench_hf.py: unknown --shape '{n}'; expected one of {', '.join(SHAPES)} or all")
    configs = a.config.split(",")
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"bench_hf.py: unknown --config '{c}'; expected one of {', '.join(CONFIGS)}")
    for n in names:
        for c in configs:
            print(json.dumps(measure(n, c, a.steps, a.warmup, a.attn)), flush=True)


if __name__ == "__main__":
    main()
