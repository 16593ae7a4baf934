"""``next-term-radius``: does the next term say where the first-order picture holds?

The report takes its evidence (the order study of Theorem 3.3 at 2h, h, h/2) at the user's
settings only where it expects the first-order picture to hold.  Two numbers could say where:
|M|/|F|, the correction against the step (the paper's size condition), and |M2|/|M1|, the
second-order term against the first (memless's, beyond the paper: an a-posteriori estimate of
the expansion's radius).  For each optimizer setting of a grid and a ladder of learning rates,
on the setting's reference loss (``bilinear``; ``factorization`` for Muon) from a start point the
seed perturbs, this experiment measures both (:func:`memless.studies.analysis.regime_at`: the
largest |M|/|F| at 12 points along 200 steps, |M2|/|M1| where it is largest) and whether the
order study there settles to orders 2 and 1.  Claims, decided by the rows: how well each ratio
separates the settings that settle from the others (the area under the ROC curve, per seed,
and its difference against seed noise), what the report's rule lets in and what a next-term
condition added to it would, and how often the orders settle where the next term exceeds the first.  No network and no data set: memless's own
reference losses, in float64.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Tuple

import numpy as np

#: (optimizer, hyperparameters): heavy-ball and Nesterov from short to long memory, the adaptive methods at
#: their defaults and tamed, smooth Lion, Muon at two momenta
CONFIGS: List[Tuple[str, Dict[str, Any]]] = [("heavy-ball", {"beta": 0.5}), ("heavy-ball", {"beta": 0.8}), ("heavy-ball", {"beta": 0.9}),
           ("nesterov", {"beta": 0.5}), ("nesterov", {"beta": 0.9}),
           ("adamw", {}), ("adamw", {"beta1": 0.5, "beta2": 0.6, "eps": 0.1}),
           ("adam", {"beta1": 0.9, "beta2": 0.99, "eps": 1e-3}), ("nadam", {}),
           ("rmsprop", {}), ("rmsprop", {"rho": 0.9, "eps": 0.1}),
           ("lion", {"k": "logcosh"}), ("muon", {}), ("muon", {"momentum": 0.8})]
LRS = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1]
QUICK_CONFIGS: List[Tuple[str, Dict[str, Any]]] = [("heavy-ball", {"beta": 0.5}), ("nesterov", {"beta": 0.5}),
                 ("adamw", {"beta1": 0.5, "beta2": 0.6, "eps": 0.1})]
QUICK_LRS = [1e-4, 1e-3, 1e-2]
#: how far the seed moves the reference loss's start point (standard deviation, per coordinate)
JITTER = 0.1
#: the candidate rule's threshold on |M2|/|M1|, beside the report's |M|/|F| <= FIRST_ORDER_RATIO
NEXT_TERM_RATIO = 0.3


def run(*, quick: bool = False, seeds: int = 3, device: str = "cpu", data=None, model=None, progress=None):
    import memless
    from memless.engine.objective import problem
    from memless.losses import get_loss
    from memless.studies import meanings
    from memless.studies.analysis import regime_at

    configs, lrs, seeds = (QUICK_CONFIGS, QUICK_LRS, 1) if quick else (CONFIGS, LRS, seeds)
    rows: List[Dict] = []
    total, done = seeds * len(configs), 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        for name, hyper in configs:
            optimizer = memless.get_optimizer(name, **hyper)
            loss_name = meanings.reference_losses(optimizer)[0]
            start = get_loss(loss_name).start
            start = start + JITTER * rng.standard_normal(start.shape)
            optimizer, _, theta, _ = problem(optimizer, loss_name, start)
            for lr in lrs:
                row = {"optimizer": name, "hyperparameters": _words(hyper), "seed": seed, "lr": lr,
                       "loss": loss_name, "M/F": float("nan"), "M2/M1": float("nan"), "settled": None,
                       "order_corrected": float("nan"), "order_uncorrected": float("nan")}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        regime = regime_at(optimizer, loss_name, lr, theta=theta)
                except memless.DivergenceError:
                    rows.append(row)              # the optimizer's own path diverged: no ratios
                    continue
                order = regime.order
                row.update({"M/F": regime.memory_ratio,
                            "M2/M1": float("nan") if regime.next_term_ratio is None else regime.next_term_ratio,
                            "settled": bool(order.settled),
                            "order_corrected": _number(order.corrected), "order_uncorrected": _number(order.uncorrected)})
                rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total, f"{name} {_words(hyper)} seed {seed}")
    return rows, claims(rows)


def _words(hyper) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyper.items()) or "defaults"


def _number(value) -> float:
    return float("nan") if value is None else float(value)


# ----------------------------------------------------------------------------
# The claims, decided by the rows
# ----------------------------------------------------------------------------


def usable(rows) -> List[Dict]:
    """The rows both ratios speak for: the path did not diverge, memory's effect is above rounding
    (the report takes no evidence below it) and the next term could be computed."""
    from memless.studies.analysis import INVISIBLE
    return [r for r in rows if r["settled"] is not None and np.isfinite(r["M/F"]) and r["M/F"] > INVISIBLE
            and np.isfinite(r["M2/M1"])]


def separation(ratios, settled) -> float:
    """The area under the ROC curve of "a small ratio predicts that the orders settle": the chance that a
    setting that settles has a smaller ratio than one that does not (ties count half); NaN without both."""
    ratios, settled = np.asarray(ratios, dtype=float), np.asarray(settled, dtype=bool)
    good, bad = ratios[settled], ratios[~settled]
    if not len(good) or not len(bad):
        return float("nan")
    smaller = (good[:, None] < bad[None, :]).sum() + 0.5 * (good[:, None] == bad[None, :]).sum()
    return float(smaller / (len(good) * len(bad)))


def _counts(rows, rule):
    good = [r for r in rows if r["settled"]]
    bad = [r for r in rows if not r["settled"]]
    return sum(map(rule, good)), len(good), sum(map(rule, bad)), len(bad)


def claims(rows) -> List[Dict]:
    from memless.studies.analysis import FIRST_ORDER_RATIO
    rows = usable(rows)
    seeds = sorted({r["seed"] for r in rows})
    out: List[Dict] = []
    by_seed = []
    for seed in seeds:
        part = [r for r in rows if r["seed"] == seed]
        settled = [r["settled"] for r in part]
        by_seed.append((separation([r["M/F"] for r in part], settled),
                        separation([r["M2/M1"] for r in part], settled)))
    first = np.array([a for a, _ in by_seed])
    second = np.array([b for _, b in by_seed])
    difference = second - first
    if len(seeds) >= 3 and np.all(np.isfinite(difference)):
        spread = float(np.std(difference, ddof=1))
        mean = float(np.mean(difference))
        size = abs(mean) / spread if spread > 0 else (float("inf") if mean else 0.0)
        if size >= 2 and np.all(np.sign(difference) == np.sign(mean)) and mean != 0:
            verdict = "the next term separates better" if mean > 0 else "|M|/|F| separates better"
        else:
            verdict = "not distinguishable from seed noise"
        noise = f"; the difference {mean:+.3f} is {size:.1f} seed-sd: {verdict}"
    else:
        verdict, noise = "too few seeds for a verdict", " (too few seeds for a verdict)"
    settle = sum(r["settled"] for r in rows)
    out.append({"claim": "separation", "verdict": verdict, "auc_memory_ratio": first.tolist(),
                "auc_next_term": second.tolist(),
                "sentence": (f"Over {len(rows)} settings ({settle} settle; seeds {', '.join(map(str, seeds))}), a "
                             f"small |M|/|F| predicts that the orders settle with AUC {_mean_sd(first)} "
                             f"({'per seed' if len(seeds) > 1 else 'one seed'}), a small |M2|/|M1| with AUC "
                             f"{_mean_sd(second)}{noise}.")})
    alone = _counts(rows, lambda r: r["M/F"] <= FIRST_ORDER_RATIO)
    both = _counts(rows, lambda r: r["M/F"] <= FIRST_ORDER_RATIO and r["M2/M1"] <= NEXT_TERM_RATIO)
    out.append({"claim": "rule", "memory_ratio_alone": list(alone), "with_next_term": list(both),
                "sentence": (f"The report's rule, |M|/|F| <= {FIRST_ORDER_RATIO}, takes the evidence at "
                             f"{alone[0]} of the {alone[1]} settings that settle and at {alone[2]} of the {alone[3]} "
                             f"that do not; requiring |M2|/|M1| <= {NEXT_TERM_RATIO} as well would take it at "
                             f"{both[0]} and {both[2]}.")})
    beyond = [r for r in rows if r["M2/M1"] > NEXT_TERM_RATIO]
    above_one = [r for r in rows if r["M2/M1"] > 1]
    out.append({"claim": "beyond", "settled_beyond": sum(r["settled"] for r in beyond), "beyond": len(beyond),
                "settled_above_one": sum(r["settled"] for r in above_one), "above_one": len(above_one),
                "sentence": (f"Where |M2|/|M1| > {NEXT_TERM_RATIO} the orders settle in "
                             f"{sum(r['settled'] for r in beyond)} of {len(beyond)} settings; where it exceeds 1, in "
                             f"{sum(r['settled'] for r in above_one)} of {len(above_one)}.")})
    return out


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


__all__ = ["run", "claims", "separation", "usable"]
