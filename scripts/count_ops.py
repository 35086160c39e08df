"""Counts libtorch operator events per training step in a profiler trace, the same way for both sides.

    python scripts/count_ops.py TRACE.json --steps N          # a Chrome trace, e.g. from ./peft4j bench --profile
    python scripts/count_ops.py --hf SHAPE [--steps N]        # profiles transformers + peft (bench_hf.py's workload)

Prints one JSON line: all operator events per step ("ops") and top-level ones ("top_level": not nested inside
another operator event on the same thread, i.e. what the caller dispatched), plus the 12 most frequent top-level
names. Events are the trace's complete ("X") events that are operators: names with "::" (aten::, autograd::...),
excluding profiler step markers and user annotations.
"""
import argparse
import collections
import json
import os
import sys
import tempfile


def op_events(trace):
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    out = []
    for e in events:
        if e.get("ph") != "X" or "::" not in e.get("name", ""):
            continue
        if e.get("cat") in ("user_annotation", "python_function", "gpu_user_annotation", "kernel"):
            continue
        if e["name"].startswith("ProfilerStep"):
            continue
        out.append((e.get("pid"), e.get("tid"), float(e["ts"]), float(e.get("dur", 0)), e["name"]))
    return out


def count(events, steps):
    by_thread = collections.defaultdict(list)
    for pid, tid, ts, dur, name in events:
        by_thread[(pid, tid)].append((ts, -dur, name))
    top = collections.Counter()
    n_top = 0
    for evs in by_thread.values():
        evs.sort()
        end = -1.0
        for ts, negdur, name in evs:
            if ts >= end:  # not inside the previous top-level event
                top[name] += 1
                n_top += 1
                end = ts - negdur
    return {"steps": steps, "ops": round(len(events) / steps, 1), "top_level": round(n_top / steps, 1),
            "most_frequent_top_level": {k: round(v / steps, 1) for k, v in top.most_common(12)}}


def profile_hf(shape, steps, warmup):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "peft-examples", "src", "main", "python"))
    import torch
    from peft import LoraConfig, get_peft_model
    import bench_hf as b
    cls, make_config, seq, _, targets = b.SHAPES[shape]
    torch.manual_seed(b.SEED)
    model = cls(make_config())
    model.train()
    peft = get_peft_model(model, LoraConfig(r=b.RANK, lora_alpha=b.ALPHA, lora_dropout=0.0, target_modules=targets,
                                            fan_in_fan_out=shape.startswith("gpt2")))
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=b.LR, weight_decay=0.0)
    gen = torch.Generator().manual_seed(b.SEED)

    def step():
        ids = torch.randint(0, model.config.vocab_size, (b.BATCH, seq), generator=gen)
        peft(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    path = tempfile.mktemp(suffix=".json")
    prof.export_chrome_trace(path)
    with open(path) as f:
        trace = json.load(f)
    os.remove(path)
    r = count(op_events(trace), steps)
    r.update({"impl": "hf", "shape": shape, "torch": torch.__version__, "attn": model.config._attn_implementation})
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace", nargs="?")
    ap.add_argument("--hf", metavar="SHAPE")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    if (a.trace is None) == (a.hf is None):
        sys.exit("count_ops.py: give a trace file or --hf SHAPE")
    if a.hf:
        print(json.dumps(profile_hf(a.hf, a.steps, a.warmup)))
    else:
        with open(a.trace) as f:
            print(json.dumps(count(op_events(json.load(f)), a.steps)))


if __name__ == "__main__":
    main()
