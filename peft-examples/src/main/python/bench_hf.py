"""The Hugging Face side of `peft4j bench`: the same LoRA training steps with transformers + peft.

Same workload as io.github.peft4j.examples.BenchCommand: randomly initialised model, fp32 on the CPU, batch 4,
LoRA r=8, alpha=16, dropout 0 (model dropouts 0 too), forward with labels = input ids (transformers' shifted
causal-LM loss), backward, torch.optim.AdamW(lr=1e-4, weight_decay=0), zero_grad; 3 untimed warm-up steps.
The attention implementation is transformers' default (printed as "attn"; "sdpa" in transformers 5) unless
--attn is given. Prints one JSON object per shape with the fields peft4j prints; peak RSS is
resource.getrusage(RUSAGE_SELF).ru_maxrss (the process high-water mark so far).

    python bench_hf.py --shape llama-tiny,gpt2-tiny [--steps N] [--warmup N] [--threads N] [--attn eager|sdpa]
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
}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def measure(name, steps, warmup, attn):
    cls, make_config, seq, default_steps, targets = SHAPES[name]
    steps = steps or default_steps
    torch.manual_seed(SEED)
    kwargs = {} if attn is None else {"attn_implementation": attn}
    model = cls(make_config(), **kwargs)
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
    return {"impl": "hf", "shape": name, "ms_per_step": round(ms, 3), "tokens_per_s": round(BATCH * seq * 1000.0 / ms, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "steps": steps, "threads": torch.get_num_threads(), "batch": BATCH,
            "seq": seq, "trainable_params": sum(p.numel() for p in trainable), "last_loss": round(loss, 6),
            "attn": model.config._attn_implementation}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", required=True, help="comma-separated: " + ", ".join(SHAPES) + " or all")
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
    for n in names:
        print(json.dumps(measure(n, a.steps, a.warmup, a.attn)), flush=True)


if __name__ == "__main__":
    main()
