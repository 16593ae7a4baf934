"""What an optimizer's memory does to the loss, measured: the numbers behind the report.

The effect of each correction term is measured, not looked up: along the
optimizer's own trajectory on a loss, the sign of ``<grad N(theta), M_l(theta)>``
where N is the optimizer's sharpness proxy (``||grad L||^2`` for GD-type methods,
``||grad L||_{1,eps}`` for adaptive ones).  The memoryless step ``-h (F + M)``
changes N by ``-h <grad N, M>`` through the correction, so a positive sign means
memory pushes N down -- it acts like a penalty on N added to the loss:
**regularizing**; negative: **anti-regularizing**.

This module computes; :mod:`memless.report` draws.  Nothing here imports rich.
"""
from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from autograd import grad as _grad

from .checks import check_lr, check_n, check_optimizer
from .core import MemoryOptimizer, Term
from .engine import terms_at
from .errors import DivergenceError
from .objective import LossLike, objective, resolve_loss
from .trajectory import optimizer_path, order_study

#: |strength| below this is reported as no effect
NEGLIGIBLE = 1e-6
#: memory number h beta/(1-beta) above this: outside the theory's range
FIRST_ORDER_LIMIT = 0.1
#: |M|/|F| above this along the trajectory: the correction is not small
RATIO_LIMIT = 0.3

#: progress(done, total, label): how a renderer follows :func:`analyze`
Progress = Callable[[int, int, str], None]


class Effect(str, enum.Enum):
    """What a correction term does to the sharpness proxy N."""

    REGULARIZING = "regularizing"
    ANTI_REGULARIZING = "anti-regularizing"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


@dataclass
class ChannelEffect:
    """One correction term, measured."""

    name: str
    decay: Optional[float]            #: beta (None: a generic optimizer's single term)
    coefficient: Optional[float]      #: b beta/(1-beta)^2, the weight of the channel in M
    memory_number: Optional[float]    #: h beta/(1-beta): must be small for the first-order theory
    effect: Effect
    strength: float                   #: mean <grad N, M_l> / mean |<grad N, F>|, signed
    size: float                       #: mean |M_l| / |F|
    formula: str = ""


@dataclass
class Analysis:
    """Everything the report shows, as numbers and words; :meth:`to_json` serializes it."""

    optimizer: str
    hyperparameters: Dict
    update_rule: str
    reference: str
    loss: str
    lr: float
    sharpness: str
    channels: List[ChannelEffect]
    net_effect: Effect
    net_strength: float
    verdict: str
    modified_loss: str
    order: Dict
    memory_ratio: float
    caveats: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _strict(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _strict(x):
    """JSON-safe: non-finite floats become None, enums their values."""
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    return x


def to_json(analysis) -> str:
    """An analysis, or a list of them, as strict JSON."""
    if isinstance(analysis, list):
        return json.dumps([a.to_dict() for a in analysis], indent=2)
    return analysis.to_json()


# ----------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------


def analyze(optimizer: MemoryOptimizer, loss: LossLike = "bilinear", lr: float = 1e-3, *, theta=None,
            steps: int = 200, points: int = 12, evidence_steps: Optional[int] = None,
            progress: Optional[Progress] = None) -> Analysis:
    """Measure every correction term's effect along the optimizer's trajectory on a loss.

    ``loss`` is a reference-loss name (its start point unless ``theta`` is given) or a
    callable with ``theta``.  The evidence (Theorem 3.3) runs ``evidence_steps`` steps at
    ``lr`` (default: 20 memory lengths, clipped to [100, 200] to stay fast), and half /
    twice as many at 2 lr / lr/2.  ``progress(done, total, label)``, if given, is called
    as the work advances.

    >>> import memless
    >>> from memless.analysis import analyze
    >>> str(analyze(memless.get_optimizer("heavy-ball", beta=0.5), lr=1e-3).net_effect)
    'regularizing'
    """
    check_optimizer(optimizer)
    loss_fn, theta, loss_name = resolve_loss(loss, theta)
    lr = check_lr(lr)
    steps = check_n(steps, allow_none=False, name="steps")
    points = max(1, check_n(points, allow_none=False, name="points"))
    report = _Ticker(progress, total=1 + points + 3)
    obj = objective(loss_fn, theta)
    with np.errstate(all="ignore"):
        path = optimizer_path(optimizer, obj.gradient, theta, lr, steps)
    report("trajectory")
    rows, ratio = _measure_terms(optimizer, obj, path, lr, points, report)
    net = float(sum(r.strength for r in rows))
    net_effect = _effect(net)
    order = _evidence(optimizer, loss_fn, theta, lr, evidence_steps, report)
    analysis = Analysis(
        optimizer=optimizer.label, hyperparameters=optimizer.hyper, update_rule=optimizer.update_rule,
        reference=optimizer.reference, loss=loss_name, lr=lr, sharpness=optimizer.sharpness_formula,
        channels=rows, net_effect=net_effect, net_strength=net,
        verdict=_verdict(rows, net_effect, optimizer.sharpness_formula),
        modified_loss=optimizer.modified_loss or "", order=order, memory_ratio=ratio)
    analysis.caveats = _caveats(analysis)
    return analysis


class _Ticker:
    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, label):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, label)


def _measure_terms(optimizer, obj, path, lr, points, tick):
    """Each term's signed strength and size at ``points`` iterates of ``path``, and the largest |M|/|F|."""
    grad_N = _grad(optimizer.sharpness_proxy(obj.gradient))
    names, along_M, sizes, along_F, ratios = None, [], [], [], []
    for theta in path[np.linspace(0, len(path) - 1, points).astype(int)]:
        with np.errstate(all="ignore"):
            terms = terms_at(optimizer, obj, theta, lr)
            F = np.asarray(optimizer.limit_direction(theta, obj.frozen(theta)), dtype=float)
            gN = np.asarray(grad_N(theta), dtype=float)
        names = list(terms)
        along_M.append([float(gN @ terms[k]) for k in names])
        normF = float(np.linalg.norm(F)) or 1.0
        sizes.append([float(np.linalg.norm(terms[k])) / normF for k in names])
        ratios.append(float(np.linalg.norm(sum(terms.values()))) / normF)
        along_F.append(abs(float(gN @ F)))
        tick("terms")
    scale = float(np.mean(along_F)) or 1.0
    strengths = np.mean(along_M, axis=0) / scale
    mean_sizes = np.mean(sizes, axis=0)
    described = {t.name: t for t in optimizer.terms()}
    rows = [_row(described.get(name, Term(name)), float(s), float(z), lr)
            for name, s, z in zip(names, strengths, mean_sizes)]
    return rows, float(max(ratios))


def _row(term: Term, strength: float, size: float, lr: float) -> ChannelEffect:
    if term.decay is None:
        memory_number = None
    else:
        memory_number = lr * term.decay / (1 - term.decay) if term.decay > 0 else 0.0
    effect = _effect(strength) if term.has_memory else Effect.NONE
    return ChannelEffect(term.name, term.decay, term.weight, memory_number, effect, strength, size, term.formula)


def _evidence(optimizer, loss_fn, theta, lr, evidence_steps, tick):
    """Theorem 3.3 at 2 lr, lr, lr/2 over one horizon."""
    span = optimizer.memory_length()
    if evidence_steps is None:
        evidence_steps = int(min(max(20 * span, 100), 200))
    lrs = [2 * lr, lr, lr / 2]
    order = {"lrs": lrs, "horizon": evidence_steps * lr, "memory_lengths": evidence_steps / span}
    try:
        study = order_study(optimizer, loss_fn, theta, horizon=evidence_steps * lr, lrs=lrs,
                            callback=lambda *result: tick("order study"))
    except DivergenceError as exc:
        nan = float("nan")
        order.update(corrected=nan, uncorrected=nan, errors_corrected=[nan] * 3, errors_uncorrected=[nan] * 3,
                     diverged=str(exc), exact_corrected=False, exact_uncorrected=False)
        return order
    order.update(corrected=study.order_corrected, uncorrected=study.order_uncorrected,
                 errors_corrected=study.errors_corrected, errors_uncorrected=study.errors_uncorrected,
                 diverged=None, exact_corrected=_exact(study.errors_corrected),
                 exact_uncorrected=_exact(study.errors_uncorrected))
    return order


def _exact(errors: Sequence[float]) -> bool:
    return all(np.isfinite(errors)) and max(errors) < 1e-12


# ----------------------------------------------------------------------------
# Words
# ----------------------------------------------------------------------------


def _effect(strength: float) -> Effect:
    if not np.isfinite(strength) or abs(strength) < NEGLIGIBLE:
        return Effect.NONE
    return Effect.REGULARIZING if strength > 0 else Effect.ANTI_REGULARIZING


def describe(row: ChannelEffect) -> str:
    """A term in words, with its decay and weight."""
    if row.decay is None:
        return f"{row.name} (the whole correction of direction())"
    weight = f", weight b*beta/(1-beta)^2 = {row.coefficient:.4g}" if row.coefficient else ""
    return f"{row.name} (beta = {row.decay:g}{weight})"


def _verdict(rows: List[ChannelEffect], net_effect: Effect, proxy: str) -> str:
    active = sorted((r for r in rows if r.effect != Effect.NONE), key=lambda r: -abs(r.strength))
    quiet = [r for r in rows if (r.decay is None or r.decay > 0) and r.effect == Effect.NONE]
    if not active:
        why = (f" ({', '.join(r.name for r in quiet)}: the memory term is below {NEGLIGIBLE:g} of the step)"
               if quiet else " (no channel has memory)")
        return f"Memory does not measurably change {proxy}{why}: no anti-regularization."
    lead, others = active[0], active[1:]
    if net_effect == Effect.NONE:
        return f"The channels cancel: {', '.join(describe(r) for r in active)}."
    does = "penalizes" if net_effect == Effect.REGULARIZING else "rewards large"
    head = f"Memory {'regularizes' if net_effect == Effect.REGULARIZING else 'anti-regularizes'}: it {does} {proxy}."
    against = [r for r in others if r.effect != lead.effect]
    if against:
        return (f"{head} {describe(lead)} outweighs {', '.join(describe(r) for r in against)} "
                f"(strengths {lead.strength:+.3g} vs {', '.join(f'{r.strength:+.3g}' for r in against)}).")
    return f"{head} Driven by {', '.join(describe(r) for r in active)}."


def _caveats(analysis: Analysis) -> List[str]:
    caveats = []
    for c in analysis.channels:
        if c.memory_number is not None and c.memory_number > FIRST_ORDER_LIMIT:
            caveats.append(f"channel {c.name}: memory number h*beta/(1-beta) = {c.memory_number:.3g} > "
                           f"{FIRST_ORDER_LIMIT}: lr is beyond the range where the first-order correction holds")
    if analysis.memory_ratio > RATIO_LIMIT:
        caveats.append(f"|M|/|F| reaches {analysis.memory_ratio:.3g} along the trajectory: the correction is "
                       "not small, so the corrected iteration need not track the optimizer")
    evidence = analysis.order
    if evidence["diverged"]:
        caveats.append(f"no evidence: {evidence['diverged']}")
        return caveats
    order = evidence["corrected"]
    if not evidence["exact_corrected"] and not (np.isfinite(order) and order > 1.5):
        why = ""
        if evidence["memory_lengths"] < 20:
            why = (f"; the horizon spans only {evidence['memory_lengths']:.3g} memory lengths 1/(1-beta), "
                   "so the order may also be pre-asymptotic")
        caveats.append(f"the corrected memoryless iteration shows order {order:.2f}, not 2, on this loss at "
                       f"this lr{why}: treat the verdict as qualitative")
    return caveats
