"""``lion-vs-adamw``: the headline of Cattaneo & Shigida (2025) -- AdamW's memory anti-regularizes
and Lion's does not, offered as a reason for Lion's better generalization -- at CPU scale.

Both train the same network full-batch (no weight decay, so only memory differs in kind) to the
same training loss (the first step below 0.01), each at the learning rate of a small ladder that
gets there in the fewest steps.  There: test accuracy, the gradient's one-norm ||g||_1, and
memless's signed strength of each memory channel, <grad N, M_l>/|<grad N, F>| (> 0
regularizing; N is each optimizer's own sharpness proxy, so the two strengths are not on one
scale).  Lion is written out (torch has none): m_c = beta1 m + (1 - beta1) g, step sign(m_c),
m <- beta2 m + (1 - beta2) g; memless models it as ``lion`` with its smoothed sign.
"""
from __future__ import annotations

import numpy as np

from .data import load
from .training import accuracy, mlp, objective_of, seed_table, torch_module, trend

THRESHOLD = 0.01
ADAMW = dict(beta1=0.9, beta2=0.999, eps=1e-8)
LION = dict(rho1=0.9, rho2=0.99)


def _train(model, dataset, name, lr, max_steps):
    torch = torch_module()
    x = torch.as_tensor(dataset.x, dtype=torch.float64)
    y = torch.as_tensor(dataset.y, dtype=torch.long)
    params = list(model.parameters())
    if name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"],
                                      weight_decay=0.0)
    momentum = [torch.zeros_like(p) for p in params]
    for step in range(max_steps + 1):
        value = torch.nn.functional.cross_entropy(model(x), y)
        if float(value.detach()) < THRESHOLD:
            return step, True
        if step == max_steps:
            return step, False
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            if name == "adamw":
                for p, g in zip(params, grads):
                    p.grad = g
                optimizer.step()
            else:
                for p, g, m in zip(params, grads, momentum):
                    p.sub_(lr * torch.sign(LION["rho1"] * m + (1 - LION["rho1"]) * g))
                    m.mul_(LION["rho2"]).add_(g, alpha=1 - LION["rho2"])
    return max_steps, False


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, progress=None):
    import memless
    seeds = min(seeds, 2) if quick else seeds
    ladders = {"adamw": [1e-3, 3e-3] if not quick else [3e-3], "lion": [1e-4, 3e-4] if not quick else [3e-4]}
    max_steps = 3000 if quick else 10_000
    rows, total, done = [], seeds * sum(len(v) for v in ladders.values()), 0
    for seed in range(seeds):
        dataset = load(data or "digits", seed)
        for name, lrs in ladders.items():
            best = None
            for lr in lrs:
                model = mlp(dataset.x.shape[1], (32,), dataset.classes, seed)
                steps, reached = _train(model, dataset, name, lr, max_steps)
                done += 1
                if progress is not None:
                    progress(done, total, f"{name} lr={lr:g} seed {seed}")
                if reached and (best is None or steps < best[1]):
                    best = (lr, steps, model)
            if best is None:
                rows.append({"optimizer": name, "seed": seed, "lr": float("nan"), "steps": max_steps,
                             "reached": False, "test_accuracy": float("nan"), "grad_l1": float("nan")})
                continue
            lr, steps, model = best
            loss = objective_of(model, dataset)
            memory = memless.get_optimizer(name, **(ADAMW if name == "adamw" else LION))
            record = memless.Probe(memory, loss, lr=lr, every=1).step(loss.start)
            g = loss.gradient(loss.start)
            row = {"optimizer": name, "seed": seed, "lr": lr, "steps": steps, "reached": True,
                   "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test),
                   "grad_l1": float(np.sum(np.abs(g))), "M/F": record["M/F"], "strength": record["strength"]}
            row.update({key: value for key, value in record.items() if key.startswith("strength:")})
            rows.append(row)
    return rows, claims(rows)


def claims(rows):
    out = []
    for quantity, label, expected, claim in (
            ("grad_l1", "||g||_1 at the threshold", -1, "Lion's is smaller (its memory does not anti-regularize)"),
            ("test_accuracy", "test accuracy", +1, "Lion's is higher")):
        table = seed_table(rows, quantity, "optimizer", ("adamw", "lion"))
        if not np.all(np.isfinite(table)):
            out.append({"quantity": quantity, "verdict": "not measured", "effect": None,
                        "sentence": f"{label}, AdamW vs Lion: not measured -- some runs did not reach loss < "
                                    f"{THRESHOLD}."})
            continue
        result = trend(label, table, expected)
        out.append({"quantity": quantity, "verdict": result.verdict, "effect": result.effect,
                    "sentence": result.sentence("optimizer (AdamW -> Lion)", claim)})
    for name in ("adamw", "lion"):
        part = [r for r in rows if r["optimizer"] == name and r["reached"]]
        if not part:
            continue
        channels = sorted({k for r in part for k in r if k.startswith("strength:")})
        text = ", ".join(f"{k[len('strength:'):]} {np.median([r[k] for r in part]):+.3g}" for k in channels)
        out.append({"quantity": f"strength {name}", "verdict": "measured", "effect": None,
                    "sentence": f"{name} at the threshold (median over seeds): channel strengths {text}; |M|/|F| "
                                f"{np.median([r['M/F'] for r in part]):.3g} (> 0 regularizing; first-order range "
                                "|M|/|F| <= 0.2)."})
    return out
