"""What an optimizer's memory does to the loss: measure it (:func:`analyze`),
draw it (:func:`render`), serialize it (:func:`to_json`).

The effect of each memory channel is measured, not looked up: along the
optimizer's own trajectory on a reference loss, the sign of
``<grad N(theta), M_l(theta)>`` where N is the optimizer's sharpness proxy
(``||grad L||^2`` for GD-type methods, ``||grad L||_{1,eps}`` for adaptive ones).
The memoryless step ``-h (F + M)`` changes N by ``-h <grad N, M>`` through the
correction, so a positive sign means memory pushes N down -- it acts like a
penalty on N added to the loss: **regularizing**; negative: **anti-regularizing**.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import autograd.numpy as anp
import numpy as np
from autograd import grad as _grad

from .core import MomentumOptimizer
from .engine import history_correction, memory_sum, momentum_terms
from .losses import get_loss
from .problem import check_lr, objective
from .trajectory import _streaming, _history, order_study

EFFECTS = ("regularizing", "anti-regularizing", "none")
NEGLIGIBLE = 1e-6        # |strength| below this is reported as no effect
FIRST_ORDER_LIMIT = 0.1  # memory number h beta/(1-beta) above this: outside the theory's range


@dataclass
class ChannelEffect:
    name: str
    decay: float
    coefficient: Optional[float]      #: b beta/(1-beta)^2, the weight of the channel in M
    memory_number: Optional[float]    #: h beta/(1-beta): must be small for the first-order theory
    effect: str
    strength: float                   #: mean <grad N, M_l> / mean |<grad N, F>|, signed
    size: float                       #: mean |M_l| / |F|
    formula: str = ""


@dataclass
class Analysis:
    optimizer: str
    hyperparameters: Dict
    update_rule: str
    reference: str
    loss: str
    lr: float
    sharpness: str
    channels: List[ChannelEffect]
    net_effect: str
    net_strength: float
    verdict: str
    modified_loss: str
    order: Dict
    memory_ratio: float
    caveats: List[str] = field(default_factory=list)


def _sharpness(obj, kind, eps):
    """N(theta): ||grad L||^2 ("l2") or ||grad L||_{1,eps} ("l1")."""
    if kind == "l1":
        return lambda t: anp.sum(anp.sqrt(obj.gradient(t) ** 2 + eps))
    return lambda t: anp.sum(obj.gradient(t) ** 2)


def _terms(optimizer, obj, theta, lr):
    if isinstance(optimizer, MomentumOptimizer):
        return momentum_terms(optimizer, obj, theta, lr, None)
    return {"memory": history_correction(optimizer, obj, theta, lr, None)[0]}


def _direction(optimizer, obj, theta):
    if isinstance(optimizer, MomentumOptimizer):
        return np.asarray(optimizer.limit_direction(theta, obj.frozen(theta)), dtype=float)
    return np.asarray(optimizer.memoryless_direction(theta, obj.frozen(theta), 10_000), dtype=float)


def analyze(optimizer, loss="bilinear", lr=1e-3, *, steps=200, points=12):
    """Measure every memory channel's effect along the optimizer's trajectory on a reference loss."""
    lr = check_lr(lr)
    reference = get_loss(loss)
    obj = objective(reference.loss, reference.start)
    with np.errstate(all="ignore"):
        if isinstance(optimizer, MomentumOptimizer):
            path = _streaming(optimizer, obj, reference.start, lr, steps)
        else:
            path = _history(optimizer, obj, reference.start, lr, steps)
    eps = float(getattr(optimizer, "eps", 1e-8))
    grad_N = _grad(_sharpness(obj, optimizer.sharpness, eps))

    names, along_M, sizes, along_F, ratios = None, [], [], [], []
    for theta in path[np.linspace(0, steps, points).astype(int)]:
        terms = _terms(optimizer, obj, theta, lr)
        F = _direction(optimizer, obj, theta)
        gN = np.asarray(grad_N(theta), dtype=float)
        names = list(terms)
        along_M.append([float(gN @ terms[k]) for k in names])
        normF = float(np.linalg.norm(F)) or 1.0
        sizes.append([float(np.linalg.norm(terms[k])) / normF for k in names])
        ratios.append(float(np.linalg.norm(sum(terms.values()))) / normF)
        along_F.append(abs(float(gN @ F)))
    scale = float(np.mean(along_F)) or 1.0
    strengths = np.mean(along_M, axis=0) / scale
    mean_sizes = np.mean(sizes, axis=0)

    decays = {ch.name: ch for ch in optimizer.channels()} if isinstance(optimizer, MomentumOptimizer) else {}
    rows = []
    for name, strength, size in zip(names, strengths, mean_sizes):
        ch = decays.get(name)
        decay = ch.decay if ch else float("nan")
        if ch is not None and ch.decay == 0:
            coefficient = memory = 0.0
        elif ch is not None:
            coefficient = float(ch.b(math.inf)) * memory_sum(ch.decay, None)
            memory = lr * ch.decay / (1 - ch.decay)
        else:
            coefficient = memory = None
        rows.append(ChannelEffect(name, decay, coefficient, memory, _effect(strength, ch),
                                  float(strength), float(size), ch.formula if ch else ""))

    net = float(np.sum(strengths))
    net_effect = _effect(net, None)
    study = order_study(optimizer, reference.loss, reference.start, horizon=100 * lr, lrs=[2 * lr, lr, lr / 2])
    analysis = Analysis(
        optimizer=optimizer._label(), hyperparameters=optimizer.hyper, update_rule=optimizer.update_rule,
        reference=optimizer.reference, loss=reference.name, lr=lr, sharpness=optimizer.sharpness,
        channels=rows, net_effect=net_effect, net_strength=net,
        verdict=_verdict(rows, net_effect, optimizer.sharpness),
        modified_loss=getattr(optimizer, "modified_loss", ""),
        order={"corrected": study.order_corrected, "uncorrected": study.order_uncorrected,
               "lrs": study.lrs, "errors_corrected": study.errors_corrected,
               "errors_uncorrected": study.errors_uncorrected, "horizon": study.horizon},
        memory_ratio=float(max(ratios)),
    )
    analysis.caveats = _caveats(analysis)
    return analysis


def _effect(strength, channel):
    if channel is not None and channel.decay == 0:
        return "none"
    if not np.isfinite(strength) or abs(strength) < NEGLIGIBLE:
        return "none"
    return "regularizing" if strength > 0 else "anti-regularizing"


def _proxy(sharpness):
    return "||grad L||_{1,eps}" if sharpness == "l1" else "||grad L||^2"


def _verdict(rows, net_effect, sharpness):
    active = [r for r in rows if r.effect != "none"]
    quiet = [r for r in rows if r.decay and r.decay > 0 and r.effect == "none"]
    proxy = _proxy(sharpness)
    if not active:
        why = (" (the memory term is below 1e-6 of the step: e.g. O(eps) for a smooth sign, exactly 0 for sign)"
               if quiet else " (no channel has memory)")
        return f"Memory does not measurably change {proxy}{why}: no anti-regularization."
    parts = ", ".join(f"{r.name} (decay {r.decay:g}) {r.strength:+.3g}" for r in active)
    if net_effect == "regularizing":
        return f"Memory regularizes: it penalizes {proxy}. Contributions: {parts}."
    if net_effect == "anti-regularizing":
        return f"Memory anti-regularizes: it rewards large {proxy}. Contributions: {parts}."
    return f"The channels cancel: {parts}."


def _caveats(analysis):
    caveats = []
    big = [c for c in analysis.channels if c.memory_number is not None and c.memory_number > FIRST_ORDER_LIMIT]
    for c in big:
        caveats.append(f"channel {c.name}: memory number h*beta/(1-beta) = {c.memory_number:.3g} > "
                       f"{FIRST_ORDER_LIMIT}: lr is beyond the range where the first-order correction holds")
    if analysis.memory_ratio > 0.3:
        caveats.append(f"|M|/|F| reaches {analysis.memory_ratio:.3g} along the trajectory: the correction is "
                       "not small, so the corrected iteration need not track the optimizer")
    order = analysis.order["corrected"]
    exact = max(analysis.order["errors_corrected"]) < 1e-12
    if not exact and not (np.isfinite(order) and order > 1.5):
        caveats.append(f"the corrected memoryless iteration shows order {order:.2f}, not 2, on this loss at "
                       "this lr: treat the verdict as qualitative")
    return caveats


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------

_STYLE = {"regularizing": "green", "anti-regularizing": "red", "none": "dim"}


def render(analysis):
    """A rich renderable of the analysis (print it with a rich Console)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    hp = ", ".join(f"{k}={v}" for k, v in analysis.hyperparameters.items()) or "none"
    head = Text.assemble((f"{analysis.optimizer}", "bold"), f"  ({analysis.reference})\n",
                         f"update: {analysis.update_rule}\n", f"hyperparameters: {hp}\n",
                         f"reference loss: {analysis.loss}, lr = {analysis.lr:g}, "
                         f"sharpness proxy N = {_proxy(analysis.sharpness)}")

    table = Table(title="Memory channels: M = sum of channel terms (Eq. 12, Section 3.2)", expand=False)
    for column in ("channel", "β", "bβ/(1-β)²", "hβ/(1-β)", "|M_l|/|F|", "strength", "effect"):
        table.add_column(column, justify="left" if column in ("channel", "effect") else "right")
    for c in analysis.channels:
        table.add_row(c.name, _num(c.decay), _num(c.coefficient), _num(c.memory_number), _num(c.size),
                      f"{c.strength:+.3g}", Text(c.effect, style=_STYLE[c.effect]))

    verdict = Text(analysis.verdict)
    if analysis.modified_loss:
        verdict.append(f"\nmodified loss: {analysis.modified_loss}")
    verdict_panel = Panel(verdict, title=f"verdict: {analysis.net_effect}", border_style=_STYLE[analysis.net_effect])

    order = analysis.order
    evidence = Table(title=f"Evidence: memoryless iteration vs the optimizer, horizon {order['horizon']:g}")
    for column in ("lr", "error with M", "error without M"):
        evidence.add_column(column, justify="right")
    for lr, ec, eu in zip(order["lrs"], order["errors_corrected"], order["errors_uncorrected"]):
        evidence.add_row(f"{lr:g}", f"{ec:.3e}", f"{eu:.3e}")
    if max(order["errors_corrected"]) < 1e-12:
        evidence.add_row("order", "exact", f"{order['uncorrected']:.2f}", style="bold")
    else:
        evidence.add_row("order", f"{order['corrected']:.2f}", f"{order['uncorrected']:.2f}", style="bold")

    parts = [head, table, verdict_panel, evidence]
    if analysis.caveats:
        parts.append(Panel("\n".join(analysis.caveats), title="caution", border_style="yellow"))
    return Group(*parts)


def _num(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"


def to_json(analysis):
    """The analysis as a JSON string."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(asdict(analysis)), indent=2)
