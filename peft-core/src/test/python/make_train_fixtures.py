"""Reference numbers for peft4j's optimizers and losses (io.github.peft4j.train).

Writes ../resources/fixtures/train/optimizer.json and losses.json with torch (CPU, fp32):
  * torch.optim.AdamW (betas, eps, weight decay; the 'bias' parameter in a group without decay) and
    torch.optim.SGD (momentum, weight decay, 'bias' without decay), 5 steps on fixed tensors with fixed
    per-step gradients; the parameters after every step.
  * F.cross_entropy (ignore_index=-100, mean) for causal-LM (shifted), sequence- and token-classification.

Run: /work/V/bin/python make_train_fixtures.py
"""
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "resources", "fixtures", "train")
STEPS = 5
SHAPES = {"layer.lora_A.weight": (3, 4), "layer.lora_B.weight": (4, 3), "layer.bias": (4,)}


def tensors(seed):
    g = torch.Generator().manual_seed(seed)
    params = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    grads = [{n: torch.randn(s, generator=g) for n, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def run(make_opt, seed, lrs):
    init, grads = tensors(seed)
    params = {n: torch.nn.Parameter(t.clone()) for n, t in init.items()}
    decay = [p for n, p in params.items() if not n.endswith("bias")]
    no_decay = [p for n, p in params.items() if n.endswith("bias")]
    opt = make_opt([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
    after = []
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[step]
        for n, p in params.items():
            p.grad = grads[step][n].clone()
        opt.step()
        after.append({n: p.detach().flatten().tolist() for n, p in params.items()})
    return {
        "shapes": {n: list(s) for n, s in SHAPES.items()},
        "initial": {n: t.flatten().tolist() for n, t in init.items()},
        "grads": [{n: t.flatten().tolist() for n, t in g.items()} for g in grads],
        "lr": lrs,
        "after": after,
    }


def optimizers():
    lrs = [1e-2, 2e-2, 1.5e-2, 1e-2, 5e-3]
    adamw = run(lambda groups: torch.optim.AdamW(groups, lr=lrs[0], betas=(0.8, 0.95), eps=1e-6,
                                                 weight_decay=0.1), 1, lrs)
    adamw["config"] = {"beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.1}
    sgd = run(lambda groups: torch.optim.SGD(groups, lr=lrs[0], momentum=0.9, weight_decay=0.05), 2, lrs)
    sgd["config"] = {"momentum": 0.9, "weight_decay": 0.05}
    return {"torch": torch.__version__, "adamw": adamw, "sgd": sgd}


def losses():
    g = torch.Generator().manual_seed(7)
    out = {"torch": torch.__version__}
    # causal LM: B=2, T=5, V=6; labels with ignored positions (-100)
    logits = torch.randn(2, 5, 6, generator=g)
    labels = torch.tensor([[1, 2, -100, 4, 5], [-100, 0, 3, -100, 2]])
    shift_logits = logits[:, :-1, :].reshape(-1, 6)
    shift_labels = labels[:, 1:].reshape(-1)
    out["causal"] = {"logits": logits.flatten().tolist(), "shape": [2, 5, 6], "labels": labels.tolist(),
                     "loss": F.cross_entropy(shift_logits, shift_labels, ignore_index=-100).item()}
    logits = torch.randn(3, 4, generator=g)
    labels = torch.tensor([2, 0, 3])
    out["classification"] = {"logits": logits.flatten().tolist(), "shape": [3, 4], "labels": labels.tolist(),
                             "loss": F.cross_entropy(logits, labels).item()}
    logits = torch.randn(2, 4, 3, generator=g)
    labels = torch.tensor([[0, -100, 2, 1], [1, 1, -100, -100]])
    out["token"] = {"logits": logits.flatten().tolist(), "shape": [2, 4, 3], "labels": labels.tolist(),
                    "loss": F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100).item()}
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in (("optimizer.json", optimizers()), ("losses.json", losses())):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(data, f, indent=1)
        print("wrote", os.path.join(OUT, name))


if __name__ == "__main__":
    main()
