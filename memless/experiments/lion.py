"""``lion-vs-adamw``: the headline of Cattaneo & Shigida (2025) -- AdamW's memory anti-regularizes
and Lion's does not, offered as a reason for Lion's better generalization -- at CPU scale.

Both train the same network full-batch (no weight decay, so only memory differs in kind) to the
same training loss (the first step below 0.01), each at the learning rate of a small ladder that
gets there in the fewest steps (:data:`LADDERS`).  There: test accuracy, the gradient's one-norm
||g||_1, and memless's signed strength of each memory channel, <grad N, M_l>/|<grad N, F>| (> 0
regularizing; N is each optimizer's own sharpness proxy, so the two strengths are not on one
scale), also along training (a :class:`memless.Probe` in the loop every :data:`EVERY` steps:
the median strength and the share of measurements where it is positive).  Lion is written out (torch has none): m_c = beta1 m + (1 - beta1) g, step sign(m_c),
m <- beta2 m + (1 - beta2) g; memless models it as ``lion`` with its smoothed sign.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from .data import load
from .training import THRESHOLD, accuracy, inputs, network, objective_of, seed_table, trend

ADAMW = dict(beta1=0.9, beta2=0.999, eps=1e-8)
LION = dict(rho1=0.9, rho2=0.99)
#: memless measures each memory channel's strength every EVERY steps along the chosen run
EVERY = 100
#: the learning-rate ladders (the run that reaches the threshold in the fewest steps is kept)
#: Lion's rates a tenth of AdamW's, rung by rung (Lion's usual ratio is 3-10x): each rung is also a matched pair
LADDERS = {"adamw": [1e-3, 3e-3, 1e-2, 3e-2], "lion": [1e-4, 3e-4, 1e-3, 3e-3]}
QUICK_LADDERS = {"adamw": [3e-3], "lion": [3e-4]}


def _train(model, dataset, name, lr, max_steps, device, probe=None):
    """Full-batch training until the loss first falls below THRESHOLD; ``probe(step, params)``
    every EVERY steps from step 0."""
    import torch
    model.to(device)
    x, y = inputs(dataset, "train", next(model.parameters()).dtype, device)
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
        if probe is not None and step % EVERY == 0:
            probe(step, params)
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


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, model=None, progress=None):
    import memless

    from ..frameworks.torch import flat
    seeds = min(seeds, 2) if quick else seeds
    ladders = QUICK_LADDERS if quick else LADDERS
    max_steps = 3000 if quick else 10_000
    rows, total, done = [], seeds * sum(len(v) for v in ladders.values()), 0
    for seed in range(seeds):
        dataset = load(data or "digits", seed)
        for name, lrs in ladders.items():
            best: Any = None
            for lr in lrs:
                net = network(model, dataset, (32,), seed)
                loss = objective_of(net, dataset)
                probe = memless.Probe(memless.get_optimizer(name, **(ADAMW if name == "adamw" else LION)), loss,
                                      lr=lr, every=1)
                along: List[Dict[str, Any]] = []
                steps, reached = _train(net, dataset, name, lr, max_steps, device,
                                        probe=lambda step, params, log=along, probe=probe:
                                        log.append(probe.step(flat(params))))
                done += 1
                if progress is not None:
                    progress(done, total, f"{name} lr={lr:g} seed {seed}")
                here = flat(list(net.parameters()))
                rung = {"kind": "rung", "optimizer": name, "seed": seed, "lr": lr, "rung": lrs.index(lr),
                        "steps": steps, "reached": reached,
                        "test_accuracy": accuracy(net, dataset, "test", device) if reached else float("nan"),
                        "grad_l1": float(np.sum(np.abs(loss.gradient(here)))) if reached else float("nan")}
                rows.append(rung)
                if reached and (best is None or steps < best[0]["steps"]):
                    best = (rung, here, probe, along)
            if best is None:
                rows.append({"kind": "fastest", "optimizer": name, "seed": seed, "lr": float("nan"), "steps": max_steps,
                             "reached": False, "test_accuracy": float("nan"), "grad_l1": float("nan")})
                continue
            rung, here, probe, along = best            # the chosen run's measurements, taken once
            record = probe.step(here)
            row = {"kind": "fastest", "optimizer": name, "seed": seed, "lr": rung["lr"], "ladder_top": max(lrs),
                   "steps": rung["steps"], "reached": True, "test_accuracy": rung["test_accuracy"],
                   "grad_l1": rung["grad_l1"], "M/F": record["M/F"], "strength": record["strength"],
                   "measured_along": len(along),
                   "M/F_along_median": float(np.median([r["M/F"] for r in along]))}
            for key in (k for k in record if k.startswith("strength:")):
                row[key] = record[key]
                row[key.replace("strength:", "along_median:")] = float(np.median([r[key] for r in along]))
                row[key.replace("strength:", "along_positive:")] = float(np.mean([r[key] > 0 for r in along]))
            rows.append(row)
    return rows, claims(rows)


def _along(rows, key):
    """One channel's strength along training, over seeds: its median and how often it was positive."""
    channel = key[len("strength:"):]
    medians = [r[key.replace("strength:", "along_median:")] for r in rows]
    positive = float(np.mean([r[key.replace("strength:", "along_positive:")] for r in rows]))
    if all(m == 0 for m in medians) and positive == 0:
        return f"{channel} 0 (at the median of every run)"
    return f"{channel} {np.median(medians):+.3g} (> 0 at {positive:.0%} of measurements)"


def claims(rows):
    rungs = [r for r in rows if r.get("kind") == "rung"]
    rows = [r for r in rows if r.get("kind", "fastest") == "fastest"]
    out: List[Dict[str, Any]] = []
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
                    "sentence": "At each one's fastest rate: " + result.sentence("optimizer (AdamW -> Lion)", claim)})
    for rung in sorted({r["rung"] for r in rungs}):
        pair = [r for r in rungs if r["rung"] == rung]
        rates = {r["optimizer"]: r["lr"] for r in pair}
        for quantity, label, expected, claim in (("grad_l1", "||g||_1 at the threshold", -1, "Lion's is smaller"),
                                                 ("test_accuracy", "test accuracy", +1, "Lion's is higher")):
            table = seed_table(pair, quantity, "optimizer", ("adamw", "lion"))
            result = trend(label, table, expected)
            out.append({"quantity": f"{quantity} rung {rung}", "verdict": result.verdict, "effect": result.effect,
                        "sentence": f"At AdamW lr {rates.get('adamw', float('nan')):g} vs Lion lr "
                                    f"{rates.get('lion', float('nan')):g}: "
                                    + (result.sentence("optimizer (AdamW -> Lion)", claim)
                                       if result.verdict != "not measured" else
                                       f"{label} not measured -- a run did not reach loss < {THRESHOLD}.")})
    for name in ("adamw", "lion"):
        part = [r for r in rows if r["optimizer"] == name and r["reached"]]
        if not part:
            continue
        ladder = sorted({r["ladder_top"] for r in part if "ladder_top" in r})
        chosen = sorted({r["lr"] for r in part})
        rungs_run = {r["lr"] for r in rungs if r["optimizer"] == name}
        if ladder and chosen[-1] >= ladder[-1] and len(rungs_run) > 1:
            out.append({"quantity": f"lr {name}", "verdict": "measured", "effect": None,
                        "sentence": f"{name}: the fastest rate to the threshold was the ladder's largest "
                                    f"({ladder[-1]:g}) in {sum(r['lr'] >= ladder[-1] for r in part)} of {len(part)} "
                                    "seeds: a larger rate might be faster still."})
        channels = sorted({k for r in part for k in r if k.startswith("strength:")})
        text = ", ".join(f"{k[len('strength:'):]} {np.median([r[k] for r in part]):+.3g}" for k in channels)
        along = ", ".join(_along(part, k) for k in channels)
        out.append({"quantity": f"strength {name}", "verdict": "measured", "effect": None,
                    "sentence": f"{name} at the threshold (median over seeds): channel strengths {text}; |M|/|F| "
                                f"{np.median([r['M/F'] for r in part]):.3g}. Along training (every {EVERY} steps, "
                                f"medians): {along}; |M|/|F| "
                                f"{np.median([r['M/F_along_median'] for r in part]):.3g} (> 0 regularizing; "
                                "first-order range |M|/|F| <= 0.2)."})
    return out
