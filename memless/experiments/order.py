"""``order-on-a-model``: Theorem 3.3 of Cattaneo & Shigida (2025) on a real network.

The optimizer and its memoryless iteration start together from the network's initialization;
over a fixed horizon T the largest distance between them is measured for a ladder of learning
rates h, with the correction M (the theorem: O(h^2), slope about 2 on a log-log plot) and
without it (O(h), slope about 1).  The local slope between neighbouring rungs shows where the
first-order picture breaks down as h grows -- the papers' open question on large learning
rates -- and, with the second-order term M2 as well (memless's, beyond the paper: the
theorem's next order, slope about 3), where adding it stops helping, next to |M|/|F| and
|M2|/|M1| along the corrected path and h lambda_max(P H) at the start, the
preconditioned sharpness (P = 1/(1 - beta) for heavy-ball; P = 1/sqrt(g^2 + eps) for Adam's limit
second moment v = g^2), by power iteration with Hessian-vector products, against the
stability edge 2.
"""
from __future__ import annotations

import numpy as np

import warnings

from ..errors import OrderWarning
from .data import load
from .training import fitted_slope, network, objective_of

#: the horizon T = n h (the quick run's: shorter)
HORIZON, QUICK_HORIZON = 1.0, 0.5


def _sharpness(loss, theta, precondition, iterations=60, seed=0):
    """lambda_max of P^(1/2) H P^(1/2) (= of P H) by power iteration with HVPs."""
    root = np.sqrt(precondition)
    v = np.random.default_rng(seed).standard_normal(theta.size)
    v /= np.linalg.norm(v)
    value = 0.0
    for _ in range(iterations):
        w = root * loss.hvp(theta, root * v)
        value = float(v @ w)
        norm = np.linalg.norm(w)
        if norm == 0:
            return 0.0
        v = w / norm
    return value


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, model=None, progress=None):
    import memless
    dataset = load(data or "digits", 0)
    if quick:
        lrs, samples, hidden, horizon = [0.005, 0.0025, 0.00125], 150, (8,), QUICK_HORIZON
    else:
        lrs, samples, hidden, horizon = [0.16, 0.08, 0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625], 300, (16,), \
            HORIZON
    dataset.x, dataset.y = dataset.x[:samples], dataset.y[:samples]
    optimizers = [("heavy-ball", dict(beta=0.9)), ("adam", dict(beta1=0.9, beta2=0.99, eps=1e-3))]
    rows, claims, total, done = [], [], len(optimizers) * min(seeds, 1 if quick else seeds), 0
    for seed in range(1 if quick else seeds):
        loss = objective_of(network(model, dataset, hidden, seed), dataset)
        theta = loss.start
        g = loss.gradient(theta)
        for name, hyper in optimizers:
            opt = memless.get_optimizer(name, **hyper)
            try:
                with warnings.catch_warnings():     # outside its range M1 + M2 warns; the rows say where
                    warnings.simplefilter("ignore", OrderWarning)
                    study = memless.order_study(opt, loss, theta, horizon=horizon, lrs=lrs, order=2)
                errors_c, errors_u = list(study.errors_corrected), list(study.errors_uncorrected)
                nan = [float("nan")] * len(lrs)              # order=2 always fills both; never drop a row
                errors_2, next_terms = list(study.errors_second or nan), list(study.next_term_ratios or nan)
                ratios = list(study.memory_ratios)
            except memless.DivergenceError:
                errors_c = errors_u = errors_2 = next_terms = ratios = [float("nan")] * len(lrs)
            precondition = (np.full(theta.size, 1.0 / (1.0 - hyper["beta"])) if name == "heavy-ball"
                            else 1.0 / np.sqrt(g ** 2 + hyper["eps"]))
            sharpness = _sharpness(loss, theta, precondition)
            for lr, ec, eu, e2, ratio, nt in zip(lrs, errors_c, errors_u, errors_2, ratios, next_terms):
                rows.append({"optimizer": name, "seed": seed, "lr": lr, "steps": int(round(horizon / lr)), "horizon": horizon,
                             "error_corrected": ec, "error_uncorrected": eu, "error_second": e2, "M/F": ratio,
                             "M2/M1": nt, "sharpness_h": lr * sharpness, "parameters": int(theta.size)})
            claims.append(_claim(name, seed, lrs, errors_c, errors_u, ratios, sharpness, errors_2))
            done += 1
            if progress is not None:
                progress(done, total, f"{name} seed {seed}")
    return rows, claims


def _claim(name, seed, lrs, errors_c, errors_u, ratios, sharpness, errors_2=None):
    """The fitted slopes over the smallest three rungs, how far up from the smallest h the corrected
    local slope (between neighbouring rungs) stays >= 1.5, and (with ``errors_2``, the errors with
    M1 + M2) that iteration's slope and how far up from the smallest h it beats M1 alone -- decided by
    the errors."""
    small = slice(len(lrs) - 3, len(lrs))
    order_c = fitted_slope(lrs[small], errors_c[small])
    order_u = fitted_slope(lrs[small], errors_u[small])
    local = [fitted_slope(lrs[i:i + 2], errors_c[i:i + 2]) for i in range(len(lrs) - 1)]    # lrs fall
    holds = 0                                   # local slopes >= 1.5, counted from the smallest h up
    for slope in reversed(local):
        if not (np.isfinite(slope) and slope >= 1.5):
            break
        holds += 1
    reproduced = abs(order_c - 2) <= 0.3 and abs(order_u - 1) <= 0.3
    verdict = "reproduced" if reproduced else "not reproduced"
    if holds == 0:
        where = (f"the corrected local slope is below 1.5 already between the two smallest h "
                 f"({local[-1]:.2f} over h = {lrs[-1]:g}..{lrs[-2]:g})")
    else:
        top = len(lrs) - 1 - holds              # the rung the last good local slope reaches
        where = f"the corrected local slope stays >= 1.5 from the smallest h up to h = {lrs[top]:g}"
        if top > 0:
            where += f" and is {local[top - 1]:.2f} between h = {lrs[top]:g} and {lrs[top - 1]:g}"
    edge = 2.0 / sharpness if sharpness > 0 else float("inf")
    sentence = (f"{name} (seed {seed}): Theorem 3.3 {verdict} -- slopes {order_c:.2f} with M and {order_u:.2f} "
                f"without over h = {lrs[-3]:g}..{lrs[-1]:g} (want 2 and 1); {where}; |M|/|F| reaches "
                f"{max(r for r in ratios if np.isfinite(r)) if any(np.isfinite(ratios)) else float('nan'):.3g}; "
                f"h lambda_max(P H) reaches 2 at h = {edge:.3g}.")
    claim = {"optimizer": name, "seed": seed, "verdict": verdict, "order_corrected": order_c,
             "order_uncorrected": order_u, "stability_edge_lr": edge, "sentence": sentence}
    if errors_2 is not None:
        claim.update(_second_claim(lrs, errors_c, errors_2))
        claim["sentence"] += " " + claim["sentence_second"]
    return claim


def _second_claim(lrs, errors_c, errors_2):
    """With M2 as well: the slope over the smallest three rungs (want 3), and from the smallest h up, the
    rungs where M1 + M2 has the smaller error than M1 alone."""
    small = slice(len(lrs) - 3, len(lrs))
    order_2 = fitted_slope(lrs[small], errors_2[small])
    helps = 0                                    # rungs, from the smallest h up, where M1 + M2 is closer
    for e2, ec in zip(reversed(errors_2), reversed(errors_c)):
        if not (np.isfinite(e2) and np.isfinite(ec) and e2 < ec):
            break
        helps += 1
    if helps == 0:
        where = f"it is not closer than M1 alone even at the smallest h = {lrs[-1]:g}"
    elif helps == len(lrs):
        where = f"it is closer to the optimizer than M1 alone at every h up to {lrs[0]:g}"
    else:
        top = len(lrs) - helps                   # the first rung, from below, where it is not closer
        e2, ec = errors_2[top - 1], errors_c[top - 1]
        state = (f"{e2 / ec:.3g} times M1's error" if np.isfinite(e2) and np.isfinite(ec) and ec > 0
                 else "not finite")
        where = (f"it is closer to the optimizer than M1 alone from the smallest h up to h = {lrs[top]:g}, and at "
                 f"h = {lrs[top - 1]:g} its error is {state}")
    sentence = f"With M2 as well (beyond the paper): slope {order_2:.2f} over the same h (want 3); {where}."
    return {"order_second": order_2, "second_helps_up_to": lrs[len(lrs) - helps] if helps else None,
            "sentence_second": sentence}
