"""``cancel-memory``: a causal test.  Train with torch.optim.Adam wrapped in memless.frameworks.torch.
Compensated, which subtracts c h M at each step so the run follows F + (1 + c) M: c = -1 (memory's
first-order effect removed), 0 (Adam itself) and +1 (doubled).  Reported per c and seed: whether and
when the training loss first falls below 0.01 (else the 8,000-step cap), and there the loss, the
perturbed norm's excess over its floor, test accuracy and the largest |M|/|F| along the run.

Adam here is torch's (eps outside the root; memless's model is ``adam`` with ``eps_inside=False``,
whose path equals torch's to 1e-16) at beta1 = 0.9, beta2 = 0.99, eps = 0.1, h = 0.03: removing or
doubling a term is a first-order statement, so the setting is one where |M| is not many times |F|.
At torch's defaults (beta2 = 0.999, eps = 1e-8 or 1e-3, h = 1e-2) |M|/|F| is in the hundreds at
initialization on this network, and in a trial run both c = -1 and c = +1 diverged.

The non-trivial prediction checked alongside: with c = -1 the run tracks the memoryless iteration
theta <- theta - h F^(n)(theta) with error O(h^2) over a fixed horizon (slope about 2 against h),
while Adam itself is only O(h) from it (slope about 1) -- Theorem 3.3 of Cattaneo & Shigida (2025)
read the other way round.  The theorem is asymptotic: it is checked where memory is short next to
the horizon (beta1 = beta2 = 0.5, eps = 0.1, the optimizer's tame values; with beta2 = 0.99 the
100-step bias-correction transient fills these short runs -- see ``order-on-a-model``).
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from ..checks import said
from ..errors import MemlessError
from .data import load
from .training import (THRESHOLD, accuracy, excess, fitted_slope, inputs, mlp, network, objective_of, seed_table,
                       torch_module, trend)

EPS, LR, BETA1, BETA2, MAX_STEPS = 0.1, 0.03, 0.9, 0.99, 8000
#: the tracking check's Adam: short memory, where Theorem 3.3's asymptotics are reached within the horizon
TRACK_BETAS, TRACK_EPS = (0.5, 0.5), 0.1
CS = (-1.0, 0.0, 1.0)


def _memory(betas=(BETA1, BETA2), eps=EPS):
    import memless
    return memless.get_optimizer("adam", beta1=betas[0], beta2=betas[1], eps=eps, eps_inside=False)


def _train(model, dataset, c, lr, max_steps, threshold=THRESHOLD, steps=None, betas=(BETA1, BETA2), eps=EPS,
           device="cpu"):
    """torch.optim.Adam wrapped in Compensated; stops below ``threshold`` (or after ``steps``).
    Returns (steps, reached, the flat parameters at each step if ``steps`` is given, the wrapper, failure)."""
    torch = torch_module()
    from ..frameworks.torch import Compensated
    loss = objective_of(model, dataset)
    model.to(device)
    x, y = inputs(dataset, "train", next(model.parameters()).dtype, device)
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
            failure = f"stopped at step {step}: {said(exc)}"
            break
        if path is not None:
            path.append(wrapped._theta())
    else:
        step = limit
    return step, reached, path, wrapped, failure


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, model=None, progress=None):
    import memless
    if quick and (data is not None or model is not None):
        raise MemlessError("cancel-memory --quick is the tracking check alone, on its own small network and the "
                           "digits: data and model apply to the full run (drop --quick)")
    seeds = 0 if quick else seeds              # the quick run checks the prediction only (each M costs ~10 ms)
    rows, total, done = [], seeds * len(CS) + 2, 0
    hidden = (32,)
    for seed in range(seeds):
        dataset = load(data or "digits", seed)
        for c in CS:
            net = network(model, dataset, hidden, seed)
            steps, reached, _, wrapped, failure = _train(net, dataset, c, LR, MAX_STEPS, device=device)
            loss = objective_of(net, dataset)
            g = loss.gradient(loss.start)
            rows.append({"kind": "train", "seed": seed, "c": c, "steps": steps, "reached": reached,
                         "loss": loss.value(loss.start), "excess": excess(g, EPS),
                         "test_accuracy": accuracy(net, dataset, "test", device), "M/F": wrapped.largest_ratio,
                         "M_seconds": wrapped.seconds, "failure": failure})
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
            model = mlp(int(np.prod(small.input_shape)), (8,), small.classes, 0)
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
    out: List[Dict[str, Any]] = []
    train = [r for r in rows if r["kind"] == "train"]
    for c in CS if train else ():
        part = [r for r in train if r["c"] == c]
        reached = [r for r in part if r["reached"]]
        ratio = "" if c == 0.0 else f"; |M|/|F| up to {max(r['M/F'] for r in part):.3g} along the runs"
        others = [r for r in part if not r["reached"]]
        where = sorted({r["failure"] or f"the {MAX_STEPS}-step cap" for r in others})
        losses = ", ".join(format(r["loss"], ".3g") for r in others)
        stopped = f"; {'the others' if reached else 'all'} stopped at {' or '.join(where)} with loss {losses}" \
            if others else ""
        out.append({"quantity": f"training c={c:+g}", "verdict": "measured", "effect": None,
                    "sentence": f"c = {c:+g}: loss < {THRESHOLD} reached in {len(reached)} of {len(part)} seeds"
                                f"{' (steps ' + ', '.join(str(r['steps']) for r in reached) + ')' if reached else ''}"
                                f"{stopped}; test accuracy {np.mean([r['test_accuracy'] for r in part]):.4f}, "
                                f"excess {np.mean([r['excess'] for r in part]):.3g} (means where each run stopped)"
                                f"{ratio}."})
    for c in (-1.0, 1.0) if train else ():
        pair = [r for r in train if r["c"] in (0.0, c)]
        if not all(r["reached"] for r in pair):
            out.append({"quantity": f"c={c:+g} vs 0", "verdict": "not measured", "effect": None,
                        "sentence": f"c = {c:+g} against Adam (c = 0) at the same loss: not measured -- not every "
                                    "run reached the threshold (above)."})
            continue
        for quantity, label in (("excess", "the norm's excess"), ("test_accuracy", "test accuracy"),
                                ("steps", "steps to the threshold")):
            result = trend(label, seed_table(pair, quantity, "c", (0.0, c)), None)
            out.append({"quantity": f"{quantity} c={c:+g} vs 0", "verdict": result.verdict, "effect": result.effect,
                        "sentence": result.sentence(f"c (0 -> {c:+g})", "memory's term changes it")})
    for r in (r for r in rows if r["kind"] == "tracking"):
        want = 2.0 if r["c"] == -1.0 else 1.0
        verdict = "as predicted" if abs(r["slope"] - want) <= 0.3 else "not as predicted"
        out.append({"quantity": f"tracking c={r['c']:+g}", "verdict": verdict, "effect": r["slope"],
                    "sentence": f"c = {r['c']:+g} (Adam with beta1 = beta2 = 0.5, eps = 0.1, on the check's own "
                                f"64-8-10 tanh network and 150 examples, on the CPU): the distance to the "
                                f"memoryless iteration theta <- theta - h F over "
                                f"t = {r['horizon']:g} has slope {r['slope']:.2f} against h (errors "
                                f"{', '.join(f'{e:.3g}' for e in r['errors'])} at h = "
                                f"{', '.join(f'{h:g}' for h in r['lrs'])}); predicted {want:g}: {verdict}."})
    if not train:
        out.append({"quantity": "training", "verdict": "not run", "effect": None,
                    "sentence": "Quick run: the tracking check alone; no training with c = -1, 0, +1 (the full run "
                                "trains them)."})
        return out
    rates = [r["M_seconds"] / r["steps"] for r in train if r["c"] != 0.0 and r["steps"]]
    cost = float(np.median(rates))
    out.append({"quantity": "cost", "verdict": "measured", "effect": cost,
                "sentence": f"Compensated's cost: {cost * 1e3:.2f} ms of correction per step on this model (median "
                            f"over {len(rates)} runs; {min(rates) * 1e3:.2f}-{max(rates) * 1e3:.2f} ms)."})
    return out
