"""Pictures of what memory does: trajectories, error slopes, channel strengths, memory
profiles and regime maps (matplotlib, the optional ``plot`` extra: ``pip install memless[plot]``).

Every function returns a matplotlib Figure and takes an ``ax`` to draw into an existing
one.  The data come from the computing modules; nothing here computes what they do not.

>>> import memless, memless.plot                           # doctest: +SKIP
>>> study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5), "curvy",
...                             None, horizon=0.3, lrs=[0.01, 0.005, 0.0025])   # doctest: +SKIP
>>> memless.plot.order(study).savefig("order.png")          # doctest: +SKIP
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..checks import said
from ..errors import MemlessError
from ..studies.analysis import RegimeMap, regime_map
from ..studies.meanings import Effect

#: the colors of the terminal report, for the same effects
EFFECT_COLORS = {Effect.REGULARIZING: "tab:green", Effect.ANTI_REGULARIZING: "tab:red", Effect.NONE: "0.6",
                 Effect.DEPENDS: "goldenrod", Effect.OUTSIDE: "tab:purple", Effect.UNRELIABLE: "tab:purple"}
#: one color per iteration, in every figure
PATH_COLORS = {"optimizer": "black", "corrected": "tab:blue", "uncorrected": "tab:orange"}
PATH_LABELS = {"optimizer": "optimizer", "corrected": "memoryless + M (Eq. 4)", "uncorrected": "memoryless, no M"}


def pyplot():
    """matplotlib.pyplot with a non-interactive backend where none is chosen; a one-line error without it."""
    import os
    try:
        import matplotlib
    except ImportError:
        raise MemlessError("memless.plot needs matplotlib: pip install memless[plot]") from None
    except ValueError as exc:            # matplotlib validates MPLBACKEND when it is imported
        raise _backend_error(exc) from None
    if "MPLBACKEND" not in os.environ and not _interactive():
        matplotlib.use("Agg")
    try:
        import matplotlib.pyplot as plt
    except (ImportError, ValueError) as exc:
        raise _backend_error(exc) from None
    return plt


def _backend_error(exc) -> MemlessError:
    """The one-line error for a backend matplotlib cannot use."""
    import os
    backend = os.environ.get("MPLBACKEND")
    where = f"MPLBACKEND={backend!r} " if backend else "matplotlib's backend "
    return MemlessError(f"{where}cannot be used: {said(exc, 200)} (unset MPLBACKEND or set it "
                        "to Agg)")


def _interactive() -> bool:
    try:
        from IPython import get_ipython
        return get_ipython() is not None
    except ImportError:
        return False


def _axes(ax, size=(6.0, 4.2)):
    if ax is not None:
        return ax.figure, ax
    plt = pyplot()
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


# ----------------------------------------------------------------------------
# Trajectories
# ----------------------------------------------------------------------------


def trajectories(optimizer, loss="bilinear", theta=None, lr: float = 1e-3, steps: int = 500, *, ax=None,
                 correction: str = "limit"):
    """The optimizer, the corrected memoryless iteration and the uncorrected one.

    Over the loss's contours for a 2-D loss (with the line of minima or flat point marked
    where the reference loss declares them), else the distance of each memoryless
    iteration from the optimizer against time t = n h.

    ``optimizer`` may be a list: then each optimizer's own path is drawn, labelled by the
    hyperparameters that differ between them -- Figure 1 of Cattaneo, Klusowski & Shigida
    (2023) is one call, ``trajectories([adam(beta1=b, beta2=r) ...], "bilinear", lr=1e-3,
    steps=12000)``.
    """
    from ..engine.objective import resolve_loss
    from ..errors import DivergenceError
    from ..studies.trajectories import trajectory

    if isinstance(optimizer, (list, tuple)):
        return _several(list(optimizer), loss, theta, lr, steps, ax)
    loss_fn, theta, name = resolve_loss(loss, theta)
    paths, diverged = {}, []
    for key, options in (("optimizer", {}), ("corrected", dict(memoryless=True, correction=correction)),
                         ("uncorrected", dict(memoryless=True, corrected=False))):
        try:
            paths[key] = trajectory(optimizer, loss_fn, theta, lr, steps, **options)
        except DivergenceError as exc:      # drawn as far as it went is not possible: say so instead
            diverged.append(f"{PATH_LABELS[key]}: {exc}")
    if "optimizer" not in paths:
        raise MemlessError(diverged[0])
    fig, ax = _axes(ax)
    label = getattr(optimizer, "label", "optimizer")
    if theta.size == 2:
        _landscape(ax, loss_fn, name, np.concatenate(list(paths.values())), theta, margin=0.25, shade="0.8")
        for key, path in paths.items():
            ax.plot(path[:, 0], path[:, 1], color=PATH_COLORS[key], label=PATH_LABELS[key],
                    linestyle="-" if key == "optimizer" else "--", linewidth=1.4)
        ax.set_title(f"{label} on {name}, h = {lr:g}, {steps} steps")
        gaps = {key: float(np.max(np.abs(paths[key] - paths["optimizer"]))) for key in ("corrected", "uncorrected")
                if key in paths}
        span = float(np.max(np.ptp(np.concatenate(list(paths.values())), axis=0))) or 1.0
        if gaps:                     # close paths look identical at this scale: say how far apart they are
            ax.text(0.02, 0.02, "largest distance from the optimizer: " + ", ".join(
                f"{'with' if key == 'corrected' else 'without'} M {gap:.1e}" for key, gap in gaps.items())
                + ("\n(the paths overlap at this scale)" if max(gaps.values()) < 0.01 * span else ""),
                transform=ax.transAxes, fontsize=7)
    else:
        t = lr * np.arange(steps + 1)
        for key in ("corrected", "uncorrected"):
            if key not in paths:
                continue
            error = np.max(np.abs(paths[key] - paths["optimizer"]), axis=1)
            ax.semilogy(t[1:], np.maximum(error[1:], 1e-300), color=PATH_COLORS[key], label=PATH_LABELS[key])
        ax.set_xlabel("t = n h")
        ax.set_ylabel("max_i |theta_i - memoryless theta_i|")
        ax.set_title(f"{label} on {name}: distance from the optimizer, h = {lr:g}")
    if diverged:
        ax.text(0.02, 0.02, "diverged (not drawn): " + "; ".join(d.split(":")[0] for d in diverged),
                transform=ax.transAxes, fontsize=7, color="tab:red")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _several(optimizers, loss, theta, lr, steps, ax):
    from ..engine.objective import resolve_loss
    from ..studies.trajectories import trajectory

    loss_fn, theta, name = resolve_loss(loss, theta)
    if theta.size != 2:
        raise MemlessError(f"several optimizers are drawn over a 2-D loss's contours; {name} has {theta.size} "
                           "parameters")
    paths = [trajectory(opt, loss_fn, theta, lr, steps) for opt in optimizers]
    varying = [k for k in optimizers[0].hyper if len({repr(o.hyper.get(k)) for o in optimizers}) > 1]
    fig, ax = _axes(ax)
    points = np.concatenate(paths + ([np.full((1, 2), np.sqrt(0.75))] if name == "bilinear" else []))
    _landscape(ax, loss_fn, name, points, theta, margin=0.15, shade="0.85")
    for opt, path in zip(optimizers, paths):
        label = opt.label + " " + ", ".join(f"{k}={opt.hyper[k]:g}" if isinstance(opt.hyper[k], float)
                                            else f"{k}={opt.hyper[k]}" for k in varying)
        ax.plot(path[:, 0], path[:, 1], linewidth=1.3, label=label.strip())
        ax.plot(*path[-1], "o", markersize=3, color=ax.get_lines()[-1].get_color())
    ax.set_title(f"{name}, h = {lr:g}, {steps} steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _landscape(ax, loss_fn, name, points, theta, margin, shade):
    """A 2-D loss's contours around ``points`` (with ``margin`` of their span), the declared minima,
    the start point, the limits and the axis labels."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = margin * np.maximum(hi - lo, 0.2)
    a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 120)
    b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 120)
    A, B = np.meshgrid(a, b)
    Z = np.array([[float(loss_fn(np.array([x, y]))) for x in a] for y in b])
    ax.contour(A, B, np.log10(Z - Z.min() + 1e-6), levels=18, colors=shade, linewidths=0.6)
    _minima(ax, name, a, b)
    ax.plot(*theta, "o", color="black", markersize=4)
    ax.set_xlim(a[0], a[-1])
    ax.set_ylim(b[0], b[-1])
    ax.set_xlabel("theta_1")
    ax.set_ylabel("theta_2")


def _minima(ax, name, a, b):
    """The bilinear model's line of minima theta_1 theta_2 = 3/4 and its flattest point, each drawn
    (and in the legend) only where it falls inside the view a x b."""
    if name != "bilinear":
        return
    x = a[np.abs(a) > 1e-3]
    labelled = False
    for sign in (1, -1):
        part = x[np.sign(x) == sign]
        y = 0.75 / part
        seen = (y >= b[0]) & (y <= b[-1])
        if seen.any():
            ax.plot(part[seen], y[seen], color="tab:green", linewidth=0.8, alpha=0.7,
                    label=None if labelled else "minima theta_1 theta_2 = 3/4")
            labelled = True
    flattest = np.sqrt(0.75)
    if a[0] <= flattest <= a[-1] and b[0] <= flattest <= b[-1]:
        ax.plot([flattest], [flattest], "*", color="tab:green", markersize=10, label="flattest minimum")


# ----------------------------------------------------------------------------
# Error slopes
# ----------------------------------------------------------------------------


def order(study, *, ax=None):
    """Global error against lr on log-log axes, with and without M, slope-1 and slope-2 guides,
    and the study's fitted orders in the legend.  ``study``: an :class:`~memless.OrderStudy`,
    or a report's ``analysis.order`` (an :class:`~memless.studies.analysis.OrderEvidence`)."""
    fig, ax = _axes(ax)
    data = {"lrs": study.lrs, "errors_corrected": study.errors_corrected,
            "errors_uncorrected": study.errors_uncorrected, "horizon": study.horizon}
    if hasattr(study, "order_corrected"):                 # an OrderStudy
        data.update(corrected=study.order_corrected, uncorrected=study.order_uncorrected)
    else:                                                 # an analysis's OrderEvidence
        data.update(corrected=study.corrected, uncorrected=study.uncorrected)
    lrs = np.asarray(data["lrs"], dtype=float)
    for key in ("corrected", "uncorrected"):
        fitted = data[key]
        text = "exact" if fitted is None else f"{fitted:.2f}"
        ax.loglog(lrs, np.maximum(data["errors_" + key], 1e-300), "o-", color=PATH_COLORS[key],
                  label=f"{PATH_LABELS[key]} (order {text})")
    for slope, key, style in ((2, "errors_corrected", ":"), (1, "errors_uncorrected", "-.")):
        anchor = float(data[key][int(np.argmax(lrs))])
        ax.loglog(lrs, max(anchor, 1e-300) * (lrs / lrs.max()) ** slope, style, color="0.5", label=f"slope {slope}")
    ax.set_xlabel("learning rate h")
    ax.set_ylabel(f"max error over t <= {data['horizon']:g}")
    ax.set_title("Theorem 3.3: error O(h^2) with M, O(h) without")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# Channels and memory profiles
# ----------------------------------------------------------------------------


def channels(analyses, *, ax=None):
    """Each channel's signed strength <grad N, M_l>/|<grad N, F>| (green regularizing, red
    anti-regularizing, as in the terminal report), for one analysis or several side by side."""
    items = analyses if isinstance(analyses, (list, tuple)) else [analyses]
    labels, values, colors = [], [], []
    for a in items:
        for c in a.channels:
            if not c.decay:
                continue
            labels.append(f"{a.optimizer}\n{c.name}" if len(items) > 1 else c.name)
            values.append(c.strength)
            colors.append(EFFECT_COLORS[Effect(c.effect)])
    from ..studies.analysis import ROUNDING
    fig, ax = _axes(ax, size=(max(4.0, 1.1 * len(labels) + 1.5), 4.0))
    positions = np.arange(len(labels))
    ax.bar(positions, values, color=colors)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, fontsize=8)
    shown = [abs(v) for v in values if np.isfinite(v) and abs(v) > ROUNDING]
    linthresh = max(1e-6, min(shown or [10.0]) / 10)      # the smallest bar above the linear region
    _symlog(ax, linthresh)
    top = max([v for v in values if np.isfinite(v)] + [0.0])
    bottom = min([v for v in values if np.isfinite(v)] + [0.0])
    ax.set_ylim(bottom * 3 if bottom < -linthresh else -linthresh * 3,           # every bar inside the axes
                top * 3 if top > linthresh else linthresh * 3)
    for x, v in zip(positions, values):
        if np.isfinite(v) and abs(v) < linthresh / 10:
            ax.text(x, 0, f"{v:+.1g}\n(below\nrounding)" if abs(v) <= ROUNDING else f"{v:+.1g}",
                    ha="center", va="bottom", fontsize=7)                         # a bar too small to see
    ax.set_ylabel("strength (> 0 regularizing)")
    ax.text(0.0, -0.22, "strength = <grad N, M_l> / |<grad N, F>|", transform=ax.transAxes, fontsize=7,
            va="top")
    names = ", ".join(a.optimizer for a in items)
    ax.set_title(f"What each memory channel does: {names}")
    fig.tight_layout()
    return fig


def memory_profile(profiles, *, labels: Optional[Sequence[str]] = None, ax=None):
    """|dF^(n)/dtheta^(n-k) . v_k| against k on a log scale, for one profile or several: geometric
    decay is a straight line; memory that does not decay stays flat or grows."""
    items = profiles if isinstance(profiles, (list, tuple)) else [profiles]
    labels = list(labels) if labels is not None else [f"profile {i + 1}" for i in range(len(items))]
    if len(labels) != len(items):
        raise MemlessError(f"labels must name each of the {len(items)} profiles, got {len(labels)}")
    fig, ax = _axes(ax)
    for profile, label in zip(items, labels):
        keep = profile.values > 0
        style = "-" if profile.decays else "--"
        ax.semilogy(profile.ks[keep], profile.values[keep], style, marker=".",
                    label=f"{label} ({'decays' if profile.decays else 'does not decay'})")
    ax.set_xlabel("age k of the iterate")
    ax.set_ylabel("|dF^(n)/dtheta^(n-k) . v_k|")
    ax.set_title(f"Memory profile at n = {items[0].n}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _symlog(ax, linthresh: float, ticks: int = 7) -> None:
    """A symmetric-log y axis with at most about ``ticks`` labelled ticks (one per decade crowds
    them together around 0), and no label at +-linthresh, where it would overlap 0's."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation, SymmetricalLogLocator
    ax.set_yscale("symlog", linthresh=linthresh)
    locator = SymmetricalLogLocator(linthresh=linthresh, base=10)
    locator.set_params(numticks=ticks)
    ax.yaxis.set_major_locator(locator)
    decades = LogFormatterSciNotation(base=10, linthresh=linthresh)

    def label(value, position):
        if value == 0:
            return "0"
        if abs(value) <= linthresh * (1 + 1e-9):
            return ""
        return decades(value, position)
    ax.yaxis.set_major_formatter(FuncFormatter(label))


def probe(probe_or_records, *, ax=None):
    """A training probe's log: each channel's signed strength against the step (report colors for
    the sign of the total), and |M|/|F| on a second axis."""
    records = getattr(probe_or_records, "records", probe_or_records)
    if not records:
        raise MemlessError("the probe has no records yet")
    fig, ax = _axes(ax)
    steps = [r["step"] for r in records]
    for key in [k for k in records[0] if k.startswith("strength:")]:
        ax.plot(steps, [r[key] for r in records], marker=".", label=key.split(":", 1)[1])
    ax.plot(steps, [r["strength"] for r in records], color="black", linewidth=1.5, label="total")
    ax.axhline(0.0, color="0.5", linewidth=0.6)
    _symlog(ax, 1e-6)
    ax.set_xlabel("training step")
    ax.set_ylabel("strength (> 0 regularizing)")
    ratio = ax.twinx()
    ratio.plot(steps, [r["M/F"] for r in records], ":", color="tab:purple", label="|M|/|F| (right axis)")
    ratio.set_ylabel("|M|/|F|")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = ratio.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=8, loc="upper left")     # both axes in one legend
    ax.set_title("What memory does during training")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------
# The report's figure, and files
# ----------------------------------------------------------------------------

FORMATS = ("png", "svg", "pdf")


def check_path(path) -> str:
    """A figure file that can be written: .png, .svg or .pdf, its folder existing and writable,
    not a directory or a device (a one-line error otherwise; see :func:`memless.files.check_output_path`)."""
    from ..files import check_output_path
    return check_output_path(path, "--plot", tuple(f".{f}" for f in FORMATS))


def save(fig, path, **options) -> str:
    """Write ``fig`` to ``path`` atomically (a temporary file renamed into place: a failed write
    leaves an existing file as it was), in the format its extension names; ``options`` go to
    matplotlib's ``savefig`` (``dpi``, ``bbox_inches``)."""
    from ..files import write_atomic
    path = check_path(path)
    extension = path.rsplit(".", 1)[-1].lower()
    return write_atomic(path, lambda fh: fig.savefig(fh, format=extension, **options))


def report_figure(analysis, optimizer, *, steps: int = 200):
    """The report as one figure: trajectories at the report's loss and lr, the evidence's error
    slopes, and the channels' strengths."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16.0, 4.6))
    trajectories(optimizer, analysis.loss, lr=analysis.lr, steps=steps, ax=axes[0])
    if analysis.order.lrs:
        order(analysis.order, ax=axes[1])
        where = "your settings" if analysis.order.setting == "yours" else "the tamed optimizer"
        axes[1].set_title(f"evidence at {where} on {analysis.order.loss}", fontsize=9)
    else:
        axes[1].set_axis_off()
    channels(analysis, ax=axes[2])
    fig.suptitle(f"{analysis.optimizer}: {analysis.net_effect}", fontsize=11)
    fig.tight_layout()
    return fig


def comparison_figure(analyses):
    """Several reports' channels side by side."""
    return channels([a for a in analyses if hasattr(a, "channels")])


# ----------------------------------------------------------------------------
# Regime maps
# ----------------------------------------------------------------------------


def regime_figure(result: "RegimeMap", ax=None):
    """The corrected order as colors (2: the first-order theory holds) with the sign of memory's
    effect drawn over it (+ regularizing, - anti-regularizing) and its zero line."""
    fig, ax = _axes(ax, size=(6.4, 5.0))
    X, Y = np.meshgrid(result.xs, result.ys)
    mesh = ax.pcolormesh(X, Y, result.order, cmap="viridis", vmin=0.0, vmax=2.5, shading="nearest")
    fig.colorbar(mesh, ax=ax, label="corrected order (2: theory holds)")
    finite = np.isfinite(result.strength)
    if finite.any() and np.nanmin(result.strength) < 0 < np.nanmax(result.strength):
        ax.contour(X, Y, result.strength, levels=[0.0], colors="white", linewidths=1.5)
    from ..studies.analysis import ROUNDING
    size = max(6, min(14, int(110 / max(len(result.xs), len(result.ys)))))      # readable at 3x3 and 12x12
    for i, yv in enumerate(result.ys):
        for j, xv in enumerate(result.xs):
            s = result.strength[i, j]
            if np.isfinite(s) and abs(s) > ROUNDING:
                ax.text(xv, yv, "+" if s > 0 else "−", ha="center", va="center", fontsize=size, fontweight="bold",
                        color=EFFECT_COLORS[Effect.REGULARIZING if s > 0 else Effect.ANTI_REGULARIZING])
    if result.x == "lr":
        ax.set_xscale("log")
    if result.y == "lr":
        ax.set_yscale("log")
    ax.set_xlabel(result.x)
    ax.set_ylabel(result.y)
    ax.set_title(f"{result.optimizer} on {result.loss}: order and sign of memory's effect\n"
                 f"({result.steps} steps at lr and {2 * result.steps} at lr/2 per cell)\n"
                 "+ memory regularizes, − anti-regularizes at the start, none: below rounding\n"
                 "white line: where the sign changes", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["trajectories", "order", "channels", "memory_profile", "regime_map", "regime_figure", "RegimeMap",
           "report_figure", "comparison_figure", "check_path", "save", "probe",
           "EFFECT_COLORS", "PATH_COLORS", "pyplot"]
