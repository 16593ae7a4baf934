"""The experiments' figures, drawn from an :class:`~memless.experiments.ExperimentResult`'s rows
and nothing else (so a figure shows exactly what the table shows).  Needs matplotlib
(``pip install memless[plot]``).

>>> from memless.experiments.figures import FIGURES
>>> sorted(FIGURES)
['adam-beta', 'adam-rho', 'cancel-memory', 'lion-vs-adamw', 'next-term-radius', 'order-on-a-model']
"""
from __future__ import annotations

import numpy as np

from .training import THRESHOLD

SEED_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def _colour(seed) -> str:
    return SEED_COLORS[int(seed) % len(SEED_COLORS)]


def _subplots(rows: int, columns: int, width: float = 4.2, height: float = 3.4):
    from ..show.plot import pyplot
    plt = pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    return fig, axes


# ----------------------------------------------------------------------------
# adam-rho, adam-beta: the norm's excess and test accuracy against the swept beta
# ----------------------------------------------------------------------------


def _adam(result):
    swept = "rho" if result.name == "adam-rho" else "beta"
    label = "beta2 (rho)" if swept == "rho" else "beta1 (beta)"
    groups = sorted({(r["data"], r["eps"]) for r in result.rows}, key=lambda k: (k[0], -k[1]))
    fig, axes = _subplots(2, len(groups))
    for column, (data, eps) in enumerate(groups):
        part = [r for r in result.rows if r["data"] == data and r["eps"] == eps]
        values = sorted({r[swept] for r in part})
        for row, (quantity, title) in enumerate((("excess", "norm - p sqrt(eps)"),
                                                  ("test_accuracy", "test accuracy"))):
            ax = axes[row][column]
            for seed in sorted({r["seed"] for r in part}):
                own = [next(r for r in part if r["seed"] == seed and r[swept] == v) for v in values]
                ax.plot(range(len(values)), [r[quantity] for r in own], "o-", color=_colour(seed), label=f"seed {seed}")
                missed = [i for i, r in enumerate(own) if not r.get("reached", True)]
                ax.plot(missed, [own[i][quantity] for i in missed], "x", color="black", ms=9,
                        label=f"loss < {THRESHOLD:g} not reached" if missed and seed == 0 else None)
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([f"{v:g}" for v in values])
            ax.set_xlabel(label)
            ax.set_title(f"{data}, eps = {eps:g}: {title}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][column].legend(fontsize=7)
    fig.suptitle(f"{result.name}: at the first step with loss < {THRESHOLD:g} (x: the step cap)\n"
                 f"({'quick' if result.settings.get('quick') else 'full'} run)", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# order-on-a-model: the global error against h, with and without M
# ----------------------------------------------------------------------------


def _order(result):
    names = list(dict.fromkeys(r["optimizer"] for r in result.rows))
    fig, axes = _subplots(1, len(names), width=4.8, height=3.8)
    for ax, name in zip(axes[0], names):
        part = [r for r in result.rows if r["optimizer"] == name]
        for seed in sorted({r["seed"] for r in part}):
            own = [r for r in part if r["seed"] == seed]
            lrs = [r["lr"] for r in own]
            ax.loglog(lrs, [r["error_corrected"] for r in own], "o-", color=_colour(seed),
                      label=f"with M, seed {seed}")
            ax.loglog(lrs, [r["error_uncorrected"] for r in own], "s--", color=_colour(seed), alpha=0.6,
                      label=f"without M, seed {seed}")
            if "error_second" in own[0]:
                ax.loglog(lrs, [r["error_second"] for r in own], "^:", color=_colour(seed), alpha=0.8,
                          label=f"with M + M2, seed {seed}")
        for claim in result.claims:
            if claim["optimizer"] == name and np.isfinite(claim["stability_edge_lr"]):
                ax.axvline(claim["stability_edge_lr"], color="grey", lw=0.8, ls=":")
        from matplotlib.ticker import NullFormatter
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("learning rate h (dotted: h lambda_max(P H) = 2)")
        ax.set_ylabel("max |theta_optimizer - theta_memoryless|")
        ax.set_title(f"{name} on {result.settings.get('data') or 'digits'}: error over t = {part[0]['horizon']:g}",
                     fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# lion-vs-adamw: each seed's AdamW and Lion side by side
# ----------------------------------------------------------------------------


def _lion(result):
    fastest = [r for r in result.rows if r.get("kind", "fastest") == "fastest"]
    rungs = [r for r in result.rows if r.get("kind") == "rung"]
    fig, axes = _subplots(1, 4 if rungs else 2)
    for ax, (quantity, title) in zip(axes[0], (("grad_l1", "||g||_1 at the threshold"),
                                               ("test_accuracy", "test accuracy"))):
        for seed in sorted({r["seed"] for r in fastest}):
            ys = [next((r[quantity] for r in fastest if r["seed"] == seed and r["optimizer"] == name),
                       float("nan")) for name in ("adamw", "lion")]
            ax.plot([0, 1], ys, "o-", color=_colour(seed), label=f"seed {seed}")
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["AdamW", "Lion"])
        ax.set_xlim(-0.4, 1.4)
        ax.set_title(f"{title}, each at its fastest rate", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, (quantity, title) in zip(axes[0][2:], (("grad_l1", "||g||_1 at the threshold"),
                                                   ("test_accuracy", "test accuracy"))):
        for name, marker in (("adamw", "o-"), ("lion", "s--")):
            own = [r for r in rungs if r["optimizer"] == name]
            for seed in sorted({r["seed"] for r in own}):
                mine = sorted((r for r in own if r["seed"] == seed), key=lambda r: r["rung"])
                ax.plot([r["rung"] for r in mine], [r[quantity] for r in mine], marker, color=_colour(seed),
                        label=f"{name} seed {seed}")
        pairs = sorted({(r["rung"], r["optimizer"], r["lr"]) for r in rungs})
        labels = {rung: "/".join(f"{lr:g}" for _, _, lr in sorted(p for p in pairs if p[0] == rung))
                  for rung in {p[0] for p in pairs}}
        ax.set_xticks(sorted(labels))
        ax.set_xticklabels([labels[k] for k in sorted(labels)], fontsize=7)
        ax.set_xlabel("lr AdamW/Lion")
        ax.set_title(f"{title}, every rung", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"lion-vs-adamw: both trained to the same loss "
                 f"({'quick' if result.settings.get('quick') else 'full'} run)", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# cancel-memory: the tracking check, and training with memory's term scaled
# ----------------------------------------------------------------------------


def _cancel(result):
    train = [r for r in result.rows if r["kind"] == "train"]
    fig, axes = _subplots(1, 3 if train else 1, width=4.4, height=3.6)
    ax = axes[0][0]
    for row in (r for r in result.rows if r["kind"] == "tracking"):
        ax.loglog(row["lrs"], row["errors"], "o-", label=f"c = {row['c']:+g}: slope {row['slope']:.2f}")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("learning rate h")
    ax.set_ylabel("max distance to theta <- theta - h F")
    ax.set_title("tracking the memoryless iteration", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    for ax, (quantity, title) in zip(axes[0][1:], (("excess", "norm above its floor"),
                                                   ("test_accuracy", "test accuracy"))):
        cs = sorted({r["c"] for r in train})
        for seed in sorted({r["seed"] for r in train}):
            ys = [next(r[quantity] for r in train if r["seed"] == seed and r["c"] == c) for c in cs]
            ax.plot(cs, ys, "o-", color=_colour(seed), label=f"seed {seed}")
        ax.set_xlabel("c (-1 removes memory's term, +1 doubles it)")
        ax.set_title(f"{title} at loss < {THRESHOLD:g} (missing: not reached)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# next-term-radius: the two ratios of every setting, marked by whether its orders settle
# ----------------------------------------------------------------------------


def _radius(result):
    from ..studies.analysis import FIRST_ORDER_RATIO
    from .radius import NEXT_TERM_RATIO, usable
    rows = usable(result.rows)
    fig, axes = _subplots(1, 1, width=6.4, height=4.8)
    ax = axes[0][0]
    for settled, marker, colour, label in ((True, "o", "#2ca02c", "orders settle (2 and 1)"),
                                           (False, "x", "#d62728", "orders do not settle")):
        own = [r for r in rows if bool(r["settled"]) == settled]
        ax.loglog([r["M/F"] for r in own], [r["M2/M1"] for r in own], marker, color=colour, ls="none",
                  label=f"{label}: {len(own)}", alpha=0.75, mfc="none" if settled else colour)
    ax.axvline(FIRST_ORDER_RATIO, color="grey", lw=0.8, ls="--")
    ax.axhline(NEXT_TERM_RATIO, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"largest |M|/|F| along the path (dashed: {FIRST_ORDER_RATIO})")
    ax.set_ylabel(f"|M2|/|M1| there (dotted: {NEXT_TERM_RATIO})")
    seeds = sorted({r["seed"] for r in rows})
    ax.set_title(f"where the evidence at your settings settles: {len(rows)} settings, seeds "
                 f"{', '.join(map(str, seeds))}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


FIGURES = {"adam-rho": _adam, "adam-beta": _adam, "order-on-a-model": _order, "lion-vs-adamw": _lion,
           "cancel-memory": _cancel, "next-term-radius": _radius}


def figure(result):
    """The figure of ``result`` (an :class:`~memless.experiments.ExperimentResult`)."""
    return FIGURES[result.name](result)
