"""``cancel-memory``: a causal test.  Train with torch.optim.Adam wrapped in memless.frameworks.torch.
Compensated, which subtracts c h M at each step so the run follows F + (1 + c) M: c = -1 (memory's
first-order effect removed), 0 (Adam itself) and +1 (doubled), and compare the norm and test accuracy at the first step with training loss
< 0.01.  Adam here is torch's (beta1 = 0.9, beta2 = 0.999, eps = 1e-3 outside the root, h = 0.01;
memless's model is ``adam`` with ``eps_inside=False``, whose path equals torch's to 1e-16).

The non-trivial prediction checked alongside: with c = -1 the run tracks the memoryless iteration
theta <- theta - h F^(n)(theta) with error O(h^2) over a fixed horizon (slope about 2 against h),
while Adam itself is only O(h) from it (slope about 1) -- Theorem 3.3 of Cattaneo & Shigida (2025)
read the other way round.  The theorem is asymptotic: it is checked where memory is short next to
the horizon (beta1 = beta2 = 0.5, eps = 0.1, the optimizer's tame values; with beta2 = 0.99 the
100-step bias-correction transient fills these short runs -- see ``order-on-a-model``).
"""
from __future__ import annotations

import numpy as np

from ..errors import MemlessError
from .data import load
from .training import accuracy, excess, fitted_slope, mlp, objective_of, seed_table, torch_module, trend

EPS, LR, THRESHOLD, BETA1, BETA2 = 1e-3, 1e-2, 0.01, 0.9, 0.999
#: the tracking check's Adam: short memory, where Theorem 3.3's asymptotics are reached within the horizon
TRACK_BETAS, TRACK_EPS = (0.5, 0.5), 0.1
CS = (-1.0, 0.0, 1.0)


def _memory(betas=(BETA1, BETA2), eps=EPS):
    import memless
    return memless.get_optimizer("adam", beta1=betas[0], beta2=betas[1], eps=eps, eps_inside=False)


def _train(model, dataset, c, lr, max_steps, threshold=THRESHOLD, steps=None, betas=(BETA1, BETA2), eps=EPS):
    """torch.optim.Adam wrapped in Compensated; stops below ``threshold`` (or after ``steps``).
    Returns (steps, reached, the flat parameters at each step if ``steps`` is given, seconds of M)."""
    torch = torch_module()
    from ..frameworks.torch import Compensated
    loss = objective_of(model, dataset)
    x = torch.as_tensor(dataset.x, dtype=torch.float64)
    y = torch.as_tensor(dataset.y, dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    wrapped = Compensated(optimizer, _memory(betas, eps), loss, c)
    path = [wrapped._theta()] if steps is not None else None
    limit = steps if steps is not None else max_steps
    reached, failure = False, ""
    for step in range(limit):
        value = torch.nn.functional.cross_entropy(model(x), y)
        if steps is None and float(value.detach()) < threshold:
            reached = True
            break
        wrapped.zero_grad()
        value.backward()
        try:
            wrapped.step()
        except MemlessError as exc:            # reported as it came out, not hidden
            failure = f"stopped at step {step}: {' '.join(str(exc).split())[:160]}"
            break
        if path is not None:
            path.append(wrapped._theta())
    else:
        step = limit
    return step, reached, path, wrapped.seconds, failure


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, progress=None):
    import memless
    seeds = 0 if quick else seeds              # the quick run checks the prediction only (each M costs ~10 ms)
    rows, total, done = [], seeds * len(CS) + 2, 0
    hidden = (32,)
    for seed in range(seeds):
        dataset = load(data or "digits", seed)
        for c in CS:
            model = mlp(dataset.x.shape[1], hidden, dataset.classes, seed)
            steps, reached, _, seconds, failure = _train(model, dataset, c, LR, 5000)
            loss = objective_of(model, dataset)
            g = loss.gradient(loss.start)
            nan = float("nan")
            rows.append({"kind": "train", "seed": seed, "c": c, "steps": steps, "reached": reached,
                         "excess": excess(g, EPS) if reached else nan,
                         "test_accuracy": accuracy(model, dataset.x_test, dataset.y_test) if reached else nan,
                         "M_seconds": seconds, "failure": failure})
            done += 1
            if progress is not None:
                progress(done, total, f"c={c:+g} seed {seed}")
    # the prediction: with c = -1 the run tracks theta <- theta - h F^(n)(theta) to O(h^2)
    small = load(data or "digits", 0)
    small.x, small.y = small.x[:150], small.y[:150]
    horizon = 0.5
    lrs = [0.01, 0.005, 0.0025] if quick else [0.01, 0.005, 0.0025, 0.00125]
    for c in (-1.0, 0.0):
        errors = []
        for lr in lrs:
            n = int(round(horizon / lr))
            model = mlp(small.x.shape[1], (8,), small.classes, 0)
            start_loss = objective_of(model, small)
            reference = memless.trajectory(_memory(TRACK_BETAS, TRACK_EPS), start_loss, start_loss.start, lr=lr,
                                           steps=n, memoryless=True, corrected=False)
            _, _, path, _, failure = _train(model, small, c, lr, n, steps=n, betas=TRACK_BETAS, eps=TRACK_EPS)
            errors.append(float(np.max(np.abs(np.array(path) - reference))) if not failure else float("nan"))
        rows.append({"kind": "tracking", "c": c, "lrs": lrs, "errors": errors,
                     "slope": fitted_slope(lrs[-3:], errors[-3:]), "horizon": horizon})
        done += 1
        if progress is not None:
            progress(done, total, f"tracking c={c:+g}")
    return rows, claims(rows)


def claims(rows):
    out = []
    train = [r for r in rows if r["kind"] == "train"]
    for quantity, label in [] if not train else (("excess", "the norm's excess over its floor"), ("test_accuracy", "test accuracy")):
        table = seed_table(train, quantity, "c", CS)
        failed = [f"c = {r['c']:+g}, seed {r['seed']}: {r['failure'] or 'did not reach the threshold'}"
                  for r in train if not r["reached"]]
        values = ", ".join(f"c = {c:+g}: {np.nanmean(table[:, i]):.4g}" for i, c in enumerate(CS)
                           if np.any(np.isfinite(table[:, i])))
        if failed:
            out.append({"quantity": quantity, "verdict": "not measured", "effect": None,
                        "sentence": f"{label} vs c: not measured across all c -- {len(failed)} run(s) did not reach "
                                    f"the threshold ({'; '.join(failed)[:400]}). Means of the others: {values}."})
            continue
        result = trend(label, table, None)
        out.append({"quantity": quantity, "verdict": result.verdict, "effect": result.effect,
                    "sentence": result.sentence("c", "memory's term changes it (c = -1 removes it, +1 doubles it)")
                    + f" Means: {values}."})
    for r in (r for r in rows if r["kind"] == "tracking"):
        want = 2.0 if r["c"] == -1.0 else 1.0
        verdict = "as predicted" if abs(r["slope"] - want) <= 0.3 else "not as predicted"
        out.append({"quantity": f"tracking c={r['c']:+g}", "verdict": verdict, "effect": r["slope"],
                    "sentence": f"c = {r['c']:+g} (Adam with beta1 = beta2 = 0.5, eps = 0.1): the distance to the "
                                f"memoryless iteration theta <- theta - h F over "
                                f"t = {r['horizon']:g} has slope {r['slope']:.2f} against h (errors "
                                f"{', '.join(f'{e:.3g}' for e in r['errors'])} at h = "
                                f"{', '.join(f'{h:g}' for h in r['lrs'])}); predicted {want:g}: {verdict}."})
    if not train:
        return out
    cost = float(np.mean([r["M_seconds"] / max(r["steps"], 1) for r in train if r["c"] != 0.0 and r["steps"]]))
    out.append({"quantity": "cost", "verdict": "measured", "effect": cost,
                "sentence": f"Compensated's cost: {cost * 1e3:.2f} ms of correction per step on this model."})
    return out
