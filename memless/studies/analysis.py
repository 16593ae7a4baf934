"""What an optimizer's memory does to the loss, measured: the numbers behind the report.

The verdict is declared where the optimizer declares its structure, and measured
where it does not; the measurement is always taken, as evidence: along the
optimizer's own trajectory on a loss, the sign of ``<grad N(theta), M_l(theta)>``
where N is the optimizer's sharpness proxy (``||grad L||^2`` for GD-type methods,
``||grad L||_{1,eps}`` for adaptive ones).  The memoryless step ``-h (F + M)``
changes N by ``-h <grad N, M>`` through the correction, so a positive sign means
memory pushes N down -- it acts like a penalty on N added to the loss:
**regularizing**; negative: **anti-regularizing**.

This module computes; :mod:`memless.show.report` draws.  Nothing here imports rich.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from autograd import grad as _grad

from .._json import strict
from .._views import Viewable, view
from ..checks import check_budget, check_callback, check_count, check_lr, check_n, shown
from ..contract.optimizer import MemoryOptimizer, Term, require_optimizer
from ..engine.corrections import MemoryProfile, memory_profile, terms_at
from ..engine.objective import LossLike, objective, problem, resolve_loss
from ..errors import DivergenceError, MemlessError, OptimizerError
from . import cache, meanings
from .meanings import VECTOR_LOSSES, Effect, Structure
from .trajectories import first_order_lrs, optimizer_path, order_study_unwarned

#: most cells per axis of a regime map
MAX_GRID = 100
#: most points an analysis measures at (each a correction), and most evidence steps per rung
MAX_POINTS = 1000
MAX_EVIDENCE_STEPS = 20_000
#: |M|/|F| above this along the trajectory: the correction is not small (this decides the caution)
RATIO_LIMIT = 0.3
#: |strength| at or below this is rounding, not a measured sign
ROUNDING = 1e-12
#: the losses every analysis of an optimizer on vectors also measures on, as evidence for the verdict
#: (an optimizer that acts on matrices uses ``MATRIX_LOSSES``: ``meanings.reference_losses``)
EVIDENCE_LOSSES = VECTOR_LOSSES

#: progress(done, total, label): how a renderer follows :func:`analyze`
Progress = Callable[[int, int, str], None]

__all__ = ["analyze", "Analysis", "ChannelEffect", "Evidence", "OrderEvidence", "ProfileEvidence", "Effect", "to_json"]


@dataclass
class ChannelEffect:
    """One correction term, measured, with its declared sign where the optimizer states one."""

    name: str
    decay: Optional[float]            #: beta (None: a generic optimizer's single term)
    coefficient: Optional[float]      #: b beta/(1-beta)^2, the weight of the channel in M
    effect: Effect                    #: the declared effect where stated, else the measured one
    strength: float                   #: mean <grad N, M_l> / mean |<grad N, F>|, signed
    size: float                       #: mean |M_l| / |F|
    formula: str = ""
    declared: Optional[int] = None    #: the structural sign of <grad N, M_l> (+1, -1, 0); None: undeclared


@dataclass
class Evidence:
    """The measured net effect on one loss."""

    loss: str
    strength: float                   #: sum of the terms' strengths along the optimizer's path
    measured: Effect                  #: its sign (NONE: at or below rounding)
    agrees: Optional[bool] = None     #: with the verdict; None where the measurement is below rounding


@dataclass
class OrderEvidence:
    """The measurement behind a verdict's trust (Theorem 3.3): an order study of the corrected and
    the uncorrected memoryless iteration against the optimizer, at the user's settings or at the
    tamed copy.  (``evidence["corrected"]`` still reads a field, as when this was a dict.)"""

    setting: str                      #: "yours" (your hyperparameters and lr), "tamed", or "none"
    lrs: List[float]
    horizon: float
    corrected: Optional[float]        #: the fitted order with M; None: "exact" (errors at rounding)
    uncorrected: Optional[float]      #: the fitted order without M; None: "exact"
    errors_corrected: List[float]
    errors_uncorrected: List[float]
    diverged: Optional[str]           #: why the study diverged, or None
    exact_corrected: bool
    exact_uncorrected: bool
    optimizer: str = ""               #: repr of the optimizer the study ran
    loss: str = ""                    #: the loss it ran on
    why: str = ""                     #: why tamed ("" at your settings)
    memory_steps: float = float("nan")     #: how many steps your optimizer's memory spans, at your settings
    ratio: float = float("nan")       #: |M|/|F| at your settings
    #: the lr below which the first-order picture is expected; None: no bound (memory's effect is below
    #: rounding at your settings, or nothing was measured)
    first_order_lr: Optional[float] = None
    horizon_in_memories: float = float("nan")  #: the study's horizon, in memory spans of the optimizer it ran

    @property
    def settled(self) -> bool:
        """The orders are 2 and 1 within :data:`ORDER_BAND` (or the corrected errors are exact)."""
        if self.diverged:
            return False
        if self.exact_corrected:
            return True
        if self.corrected is None or self.uncorrected is None:     # uncorrected exact, corrected not: not 2 and 1
            return False
        return abs(self.corrected - 2) <= ORDER_BAND[0] and abs(self.uncorrected - 1) <= ORDER_BAND[1]

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key, default)


@dataclass(frozen=True)
class ProfileEvidence:
    """The memory profile an analysis measured (:func:`memless.engine.memory_profile`): at history
    length ``n``, the sampled ages ``ks``, |dF/dtheta^(n-k) . v_k| (``values``) and gamma_k (``weights``),
    and whether memory decays (Assumption 3.1), with the reason."""

    decays: bool
    reason: str
    n: int
    ks: List[float]
    values: List[float]
    weights: List[float]


@dataclass
class Analysis(Viewable):
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
    basis: str                        #: "declared" (the optimizer's structure) or "measured"
    regime: str                       #: where the verdict holds, as printed
    modified_loss: str
    order: OrderEvidence
    memory_ratio: float
    evidence: List[Evidence] = field(default_factory=list)
    caveats: List[str] = field(default_factory=list)
    #: the memory profile where it was measured (an optimizer outside the theory), else None
    memory: Optional[ProfileEvidence] = None
    #: |M2| / |M1| where |M|/|F| is largest along your trajectory: the next term against the first
    #: (beyond the paper; None where it cannot be computed)
    next_term_ratio: Optional[float] = None

    def to_dict(self) -> dict:
        """The analysis as strict JSON data (``memory`` is {} where none was measured, as in 0.6)."""
        data = strict(asdict(self))
        data["memory"] = data["memory"] or {}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def to_json(analysis) -> str:
    """An analysis, or a list of them, as strict JSON."""
    if isinstance(analysis, list):
        return json.dumps([a.to_dict() for a in analysis], indent=2)
    return analysis.to_json()


# ----------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------


def analyze(optimizer: MemoryOptimizer, loss: Optional[LossLike] = None, lr: float = 1e-3, *, theta=None,
            steps: int = 200, points: int = 12, evidence_steps: Optional[int] = None,
            evidence_losses: Optional[Sequence[str]] = None, progress: Any = None) -> Analysis:
    """What the optimizer's memory does to the loss: a verdict, and the measurements behind it.

    The verdict comes first from the optimizer's declared structure (each term is
    c_l P grad N with P positive: its sign is the sign of c_l, exactly, in the regime the
    optimizer states, chosen from the gradients met along the path).  Where the optimizer
    declares nothing it is the measurement -- the sign of <grad N, M> along the optimizer's
    trajectory -- taken on ``loss`` and on every loss of ``evidence_losses``, and "depends on
    the loss" when they disagree.  The evidence for the correction itself (Theorem 3.3) runs
    ``evidence_steps`` steps at ``lr`` (default: 20 memory lengths, clipped to [100, 200]),
    and half / twice as many at 2 lr / lr/2.  ``progress(done, total, label)``, if given, is
    called as the work advances (``progress=True``: a line on stderr at each step of the work).  ``loss`` and ``evidence_losses`` default to the optimizer's
    reference losses (``meanings.reference_losses``: "bilinear" first; "factorization" for an optimizer
    that acts on matrices).

    >>> import memless
    >>> from memless.studies.analysis import analyze
    >>> str(analyze(memless.get_optimizer("heavy-ball", beta=0.5), lr=1e-3).net_effect)
    'regularizing'
    """
    references = meanings.reference_losses(require_optimizer(optimizer))
    optimizer, loss_fn, theta, loss_name = problem(optimizer, references[0] if loss is None else loss, theta)
    evidence_losses = references if evidence_losses is None else evidence_losses
    lr = check_lr(lr)
    steps = check_n(steps, allow_none=False, name="steps")
    points = check_count(points, "points", 1, MAX_POINTS)
    if evidence_steps is not None:
        evidence_steps = check_count(evidence_steps, "evidence_steps", 1, MAX_EVIDENCE_STEPS)
    if progress is True:
        progress = print_progress("analyze")
    check_callback(progress, "progress", "(done, total, label)")
    if not isinstance(evidence_losses, (list, tuple)) or not all(isinstance(name, str) for name in evidence_losses):
        raise MemlessError(f"evidence_losses must be a list of reference-loss names, got {shown(evidence_losses)}")
    others = [name for name in evidence_losses if name != loss_name]
    check_budget(f"analyze with steps={steps}", steps=steps * (1 + len(others)) + 7 * (evidence_steps or 200),
                 corrections=points * (1 + len(others)) + 4 * (evidence_steps or 200),
                 nbytes=(steps + 1) * theta.size * 8)
    if optimizer.declared_decay() is None:
        profile = memory_profile(optimizer, loss_fn, theta)      # Assumption 3.1, measured
        if not profile.decays:
            return _outside(optimizer, loss_name, lr, profile, progress)
    tick = _Ticker(progress, total=1 + points + len(others) + 3)
    primary = _measure(optimizer, loss_fn, theta, lr, steps, points, tick)
    structure = meanings.structure(optimizer, primary.gradients)
    evidence = [Evidence(loss_name, primary.net, _measured_effect(primary.net))]
    unsettled = [(loss_name, primary.unsettled, points)] if primary.unsettled else []
    left_out = []
    for name in others:
        bound_here, f, start, _ = problem(optimizer, name)
        try:
            other = _measure(bound_here, f, start, lr, min(steps, 100), 4, None)
        except OptimizerError as exc:           # the optimizer's own fault, met on a loss the user did not give
            raise OptimizerError(f"on the evidence loss {name!r} (pass evidence_losses=[...] to choose others): "
                                 f"{exc}") from exc
        except DivergenceError as exc:          # an evidence loss the optimizer cannot run at this lr: say so
            where = str(exc).split(":")[0]             # "<optimizer> diverged at step N (lr=...)"
            left_out.append(f"the evidence loss {name!r} is left out of the measured evidence: {where} there "
                            "(your loss ran)")
            tick(f"evidence on {name}")
            continue
        evidence.append(Evidence(name, other.net, _measured_effect(other.net)))
        if other.unsettled:
            unsettled.append((name, other.unsettled, 4))
        tick(f"evidence on {name}")
    net_effect, basis, regime = _decide(structure, evidence, primary, len(left_out))
    if unsettled and basis == "measured":
        where = "; ".join(f"{count} of {total} points on {name}" for name, count, total in unsettled)
        net_effect, regime = Effect.UNRELIABLE, f"the limit correction did not settle within its tolerance ({where})"
    for item in evidence:
        item.agrees = (None if item.measured == Effect.NONE or net_effect == Effect.UNRELIABLE
                       else item.measured == net_effect)
    rows = [_row(term, s, z, structure) for term, s, z in zip(primary.terms, primary.strengths, primary.sizes)]
    if net_effect == Effect.UNRELIABLE:
        for row in rows:
            row.effect = Effect.UNRELIABLE if row.declared is None and row.effect != Effect.NONE else row.effect
    order = _evidence(optimizer, loss_fn, theta, loss_name, lr, primary.ratio, evidence_steps, tick)
    modified = structure.modified_loss if structure is not None and structure.modified_loss \
        else meanings.modified_loss(optimizer)
    analysis = Analysis(
        optimizer=optimizer.label, hyperparameters=optimizer.hyper, update_rule=optimizer.update_rule,
        reference=optimizer.reference, loss=loss_name, lr=lr, sharpness=meanings.sharpness_formula(optimizer),
        channels=rows, net_effect=net_effect, net_strength=primary.net, basis=basis, regime=regime,
        verdict=_verdict(net_effect, meanings.sharpness_formula(optimizer), structure, evidence, regime,
                         len(left_out)),
        modified_loss=modified or "", order=order, memory_ratio=primary.ratio, evidence=evidence,
        next_term_ratio=primary.next_term)
    analysis.caveats = _caveats(analysis) + left_out
    tick.finish()
    return analysis


def _profile_evidence(profile: MemoryProfile) -> ProfileEvidence:
    return ProfileEvidence(bool(profile.decays), profile.reason, int(profile.n), profile.ks.tolist(),
                           profile.values.tolist(), profile.weights.tolist())


def _outside(optimizer, loss_name, lr, profile: MemoryProfile, progress) -> Analysis:
    """Memory that does not decay: the paper's theorem does not apply, so no verdict and no evidence."""
    nan = float("nan")
    verdict = (f"Outside the theory: memory does not decay. The weight of a k-step-old iterate does not fall "
               f"geometrically with k ({profile.reason}), so Assumption 3.1 of Cattaneo & Shigida (2025) fails, "
               "the limit correction M does not exist and Eq. (12) has no O(h^2) guarantee: no verdict.")
    order = OrderEvidence("none", [], nan, nan, nan, [], [], None, False, False, optimizer=repr(optimizer),
                          loss=loss_name, why="memory does not decay")
    if progress is not None:
        progress(1, 1, "done")
    return Analysis(
        optimizer=optimizer.label, hyperparameters=optimizer.hyper, update_rule=optimizer.update_rule,
        reference=optimizer.reference, loss=loss_name, lr=lr, sharpness=meanings.sharpness_formula(optimizer),
        channels=[], net_effect=Effect.OUTSIDE, net_strength=nan, verdict=verdict, basis="outside",
        regime="Assumption 3.1 fails: memory does not decay", modified_loss="", order=order,
        memory_ratio=nan, memory=_profile_evidence(profile))


def print_progress(who: str, stream: Any = None) -> Progress:
    """A progress callback writing to ``stream`` (default stderr): in a terminal or a Jupyter
    notebook, one line redrawn in place with a bar (``analyze [#####.......] 5/17 measuring``) that
    ends with a newline when the work is done; elsewhere (a log, a pipe) one line per step."""
    import shutil
    import sys
    last: List[Any] = [None]

    def progress(done, total, label):
        if last[0] == (done, total, label):        # nothing new to say
            return
        last[0] = (done, total, label)
        out = sys.stderr if stream is None else stream
        live = bool(getattr(out, "isatty", lambda: False)()) or "ipykernel" in sys.modules
        if not live:
            print(f"{who}: {done}/{total} {label}", file=out, flush=True)
            return
        columns = shutil.get_terminal_size((80, 24)).columns - 1     # never the last column: no wrap
        width = 24 if columns >= 60 else 10
        filled = width if not total else min(width, int(width * done / total))
        line = f"{who} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label}"[:columns]
        out.write("\r" + line.ljust(columns))
        if done >= total:
            out.write("\n")
        out.flush()
    return progress


class _Ticker:
    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, label):
        self.done = min(self.done + 1, self.total - 1)      # the last tick is finish()'s
        if self.progress is not None:
            self.progress(self.done, self.total, label)

    def finish(self):
        self.done = self.total
        if self.progress is not None:
            self.progress(self.total, self.total, "done")


@dataclass
class _Measurement:
    terms: List[Term]
    strengths: List[float]
    sizes: List[float]
    net: float
    ratio: float
    gradients: np.ndarray
    unsettled: int = 0                #: points whose limit correction did not settle
    #: |M2| / |M1| where |M|/|F| is largest (None where M2 cannot be computed)
    next_term: Optional[float] = None


@dataclass
class PointMeasure:
    """What memory does at one point: the terms M_l, <grad N, M_l>, |<grad N, F>| and |F|,
    and the loss gradient there.  The report, the training probe and the regime map use it."""

    terms: Dict[str, np.ndarray]
    along_M: Dict[str, float]          #: <grad N, M_l> per term
    along_F: float                     #: |<grad N, F>|
    F_norm: float                      #: |F| (1 where F = 0)
    gradient: np.ndarray
    #: False where the limit correction did not settle within its tolerance (then no verdict rests on it)
    converged: bool = True

    @property
    def strengths(self) -> Dict[str, float]:
        """<grad N, M_l> / |<grad N, F>| per term (> 0 regularizing)."""
        scale = self.along_F or 1.0
        return {name: value / scale for name, value in self.along_M.items()}

    @property
    def ratio(self) -> float:
        """|M| / |F|."""
        return float(np.linalg.norm(sum(self.terms.values()))) / self.F_norm


def measure_point(optimizer: MemoryOptimizer, obj, point, lr: float) -> PointMeasure:
    """The terms and their projections on grad N at ``point``.

    grad N is taken through the gradient recorded at the point (N depends on theta through
    grad L), so it costs one Hessian-vector product there, not a second gradient's graph."""
    infos: list = []
    with np.errstate(all="ignore"):
        terms = terms_at(optimizer, obj, point, lr, infos=infos)
        frozen = obj.frozen(point, linearize=True)
        F = np.asarray(optimizer.limit_direction(point, frozen), dtype=float)
        gN = np.asarray(_grad(meanings.sharpness_proxy(optimizer, frozen, obj.loss))(point), dtype=float)
    return PointMeasure(terms, {k: float(gN @ v) for k, v in terms.items()}, abs(float(gN @ F)),
                        float(np.linalg.norm(F)) or 1.0, np.asarray(frozen.value, dtype=float),
                        all(info.converged for info in infos))


def _measure(optimizer, loss_fn, theta, lr, steps, points, tick) -> _Measurement:
    """Each term's signed strength and size at ``points`` iterates of the optimizer's path,
    the largest |M|/|F|, and the loss gradients met there."""
    tick = tick or (lambda label: None)
    obj = objective(loss_fn, theta)
    with np.errstate(all="ignore"):
        path = optimizer_path(optimizer, obj.gradient, theta, lr, steps)
    tick("trajectory")
    names: List[str] = []
    along_M, sizes, along_F, ratios, gradients, unsettled = [], [], [], [], [], 0
    largest: Tuple[float, Any, Any] = (-1.0, None, None)    # (|M|/|F|, point, M) where |M|/|F| is largest
    for point in path[np.linspace(0, len(path) - 1, points).astype(int)]:
        measured = measure_point(optimizer, obj, point, lr)
        if measured.ratio > largest[0]:
            largest = (measured.ratio, point, sum(measured.terms.values()))
        gradients.append(measured.gradient)
        names = list(measured.terms)
        along_M.append([measured.along_M[k] for k in names])
        sizes.append([float(np.linalg.norm(measured.terms[k])) / measured.F_norm for k in names])
        ratios.append(measured.ratio)
        along_F.append(measured.along_F)
        unsettled += not measured.converged
        tick("terms")
    scale = float(np.mean(along_F)) or 1.0
    strengths = [float(x) for x in np.mean(along_M, axis=0) / scale]
    described = {t.name: t for t in optimizer.terms()}
    return _Measurement([described.get(name, Term(name)) for name in names], strengths,
                        [float(x) for x in np.mean(sizes, axis=0)], float(sum(strengths)), float(max(ratios)),
                        np.array(gradients), unsettled,
                        _next_term(optimizer, obj, largest[1], largest[2], lr) if largest[0] > INVISIBLE else None)


def _next_term(optimizer, obj, point, M1, lr) -> Optional[float]:
    """|M2| / |M1| at ``point`` (the second-order term against the first, :mod:`memless.engine.second_order`):
    small where the expansion in h is in its range.  None where M2 is not available (a loss without third
    derivatives, an optimizer it does not treat) or M1 is 0; the caller skips it where |M|/|F| is below
    rounding (a ratio of two rounding-level vectors means nothing)."""
    from ..engine.second_order import second_order_correction
    if point is None or M1 is None or not np.any(M1):
        return None
    try:
        with np.errstate(all="ignore"):
            M2 = second_order_correction(optimizer, obj, point, lr)
    except MemlessError:
        return None
    value = float(np.linalg.norm(M2) / np.linalg.norm(M1))
    return value if np.isfinite(value) else None


def _measured_effect(strength: float) -> Effect:
    if not np.isfinite(strength) or abs(strength) <= ROUNDING:
        return Effect.NONE
    return Effect.REGULARIZING if strength > 0 else Effect.ANTI_REGULARIZING


def _every(left_out: int, reason: str = "") -> str:
    """"every evidence loss", or -- where the optimizer diverged on some at this lr -- the ones it ran on
    (the losses left out are not "every evidence loss")."""
    return "every evidence loss" if not left_out else f"every evidence loss it ran on ({left_out} left out{reason})"


def _decide(structure: Optional[Structure], evidence: List[Evidence], primary: _Measurement, left_out: int = 0):
    """(net effect, basis, regime): the declared structure where it decides, else the measurements."""
    if structure is not None and structure.effect != Effect.DEPENDS:
        return structure.effect, "declared", structure.regime
    if structure is not None:          # the components disagree: this loss's measured sum decides here
        return _measured_effect(primary.net), "measured", structure.regime
    measured = {item.measured for item in evidence if item.measured != Effect.NONE}
    if not measured:
        return Effect.NONE, "measured", f"measured on {_every(left_out)}: below rounding"
    if len(measured) > 1:
        return Effect.DEPENDS, "measured", "measured: the evidence losses disagree"
    return measured.pop(), "measured", f"measured on {_every(left_out)}"


def _row(term: Term, strength: float, size: float, structure: Optional[Structure]) -> ChannelEffect:
    declared = None if structure is None else structure.signs.get(term.name)
    if not term.has_memory:
        effect = Effect.NONE
    elif declared is not None:
        effect = {1: Effect.REGULARIZING, -1: Effect.ANTI_REGULARIZING, 0: Effect.NONE}[declared]
    else:
        effect = _measured_effect(strength)
    return ChannelEffect(term.name, term.decay, term.weight, effect, strength, size, term.formula, declared)


#: |M|/|F| at most this along the path: the first-order picture is expected to hold.  (|M2|/|M1|, the next
#: term, predicts where the orders settle less well: the experiment next-term-radius)
FIRST_ORDER_RATIO = 0.2


@dataclass
class Regime(Viewable):
    """The numbers that say whether the first-order picture holds at a setting: what :func:`analyze`
    computes at the user's settings, with the order study run whatever the ratios are."""

    memory_ratio: float               #: the largest |M|/|F| along the optimizer's path
    next_term_ratio: Optional[float]  #: |M2|/|M1| where |M|/|F| is largest (None: not computable)
    order: OrderEvidence              #: the order study at 2 lr, lr, lr/2


def regime_at(optimizer: MemoryOptimizer, loss: LossLike, lr: float, *, theta=None, steps: int = 200,
              points: int = 12) -> Regime:
    """|M|/|F| and |M2|/|M1| along ``steps`` steps of the optimizer (at ``points`` points), and the order
    study at the user's settings that :func:`analyze` runs as evidence where |M|/|F| <= FIRST_ORDER_RATIO
    (2 lr, lr, lr/2 over 20 memory lengths, 100 to 200 steps at lr) -- here whatever the ratios are.
    Raises DivergenceError if the optimizer's own path diverges.

    >>> import memless
    >>> from memless.studies.analysis import regime_at
    >>> regime = regime_at(memless.get_optimizer("heavy-ball", beta=0.5), "bilinear", 1e-4)
    >>> bool(regime.memory_ratio < 0.2 and regime.order.settled)
    True
    """
    optimizer, loss_fn, theta, _ = problem(optimizer, loss, theta)
    lr = check_lr(lr)
    measured = _measure(optimizer, loss_fn, theta, lr, steps, points, None)
    order = _study(optimizer, loss_fn, theta, [2 * lr, lr, lr / 2], _steps_at_yours(optimizer) * lr,
                   lambda label: None, "yours", keep=False)
    return Regime(measured.ratio, measured.next_term, order)
#: |M|/|F| at most this: memory's effect on the iterates is below rounding
INVISIBLE = 1e-10
#: the horizon of the tamed evidence (0.01 -> 30 steps, 0.0025 -> 120)
TAMED_HORIZON = 0.3
#: accepted distance of the measured orders from 2 (corrected) and 1 (uncorrected)
ORDER_BAND = (0.3, 0.2)


def _steps_at_yours(optimizer) -> int:
    """The steps at lr of the order study at the user's settings: 20 memory lengths, within [100, 200]."""
    return int(min(max(20 * optimizer.memory_length(), 100), 200))


def _study(optimizer, loss_fn, theta, lrs, horizon, tick, setting, keep: bool = True) -> OrderEvidence:
    """The order study of Theorem 3.3 at these lrs, as evidence; kept on disk (``keep``, on a reference
    loss, where :data:`memless.studies.cache.DIRECTORY` is set) and reused."""
    stored = _study_key(optimizer, loss_fn, theta, lrs, horizon, setting) if keep else None
    kept = cache.load(stored, EVIDENCE_SCHEMA, _consistent)
    if kept is not None:
        for _ in lrs:
            tick("order study")
        return OrderEvidence(**kept)
    try:
        study = order_study_unwarned(optimizer, loss_fn, theta, horizon=horizon, lrs=lrs,
                                     callback=lambda *result: tick("order study"))
    except DivergenceError as exc:
        nan = float("nan")
        order = OrderEvidence(setting, list(lrs), horizon, nan, nan, [nan] * len(lrs), [nan] * len(lrs), str(exc),
                              False, False)
    else:
        exact_c, exact_u = _exact(study.errors_corrected), _exact(study.errors_uncorrected)
        order = OrderEvidence(setting, list(lrs), horizon, None if exact_c else study.order_corrected,
                              None if exact_u else study.order_uncorrected, study.errors_corrected,
                              study.errors_uncorrected, None, exact_c, exact_u)
    cache.store(stored, asdict(order))
    return order


def _study_key(optimizer, loss_fn, theta, lrs, horizon, setting) -> Optional[str]:
    """The cache key of an order study on a reference loss; None for your own loss."""
    return cache.on_reference_loss(optimizer, loss_fn, theta,
                                   f"order study|{list(map(float, lrs))!r}|{float(horizon)!r}|{setting}")


def _evidence(optimizer, loss_fn, theta, loss_name, lr, ratio, evidence_steps, tick):
    """Theorem 3.3, measured where its assumptions hold.

    At the user's hyperparameters and lr (2 lr, lr, lr/2 over 20 memory lengths, 100 to 400
    steps) when |M|/|F| stays below FIRST_ORDER_RATIO along the path and the orders settle;
    otherwise at the tamed hyperparameters of the same optimizer on its ``evidence_loss``
    (``curvy``; ``factorization`` for an optimizer that acts on matrices), at learning rates scaled down until |M|/|F| is small there (as the conformance kit
    does).  The dict says which, why, and the lr below which the first-order picture is
    expected at the user's hyperparameters (|M| grows like lr: lr * 0.2 / (|M|/|F|)).
    """
    span = optimizer.memory_length()
    below = lr * FIRST_ORDER_RATIO / ratio if ratio > INVISIBLE else None      # None: no bound
    common = {"memory_steps": span, "ratio": ratio, "first_order_lr": below}    # OrderEvidence fields
    if INVISIBLE < ratio <= FIRST_ORDER_RATIO or (evidence_steps and ratio <= FIRST_ORDER_RATIO):
        steps = evidence_steps or _steps_at_yours(optimizer)
        order = replace(_study(optimizer, loss_fn, theta, [2 * lr, lr, lr / 2], steps * lr, tick, "yours"),
                        optimizer=repr(optimizer), loss=loss_name, horizon_in_memories=steps / span, why="", **common)
        if (order.settled and not order.exact_uncorrected) or evidence_steps:
            return order
        why = (f"at your settings the orders over {steps} steps are {_fmt(order.corrected)}/"
               f"{_fmt(order.uncorrected)}: " + ("memory's effect is below rounding there, so the errors show "
                                                 "nothing" if order.exact_uncorrected else "not yet asymptotic"))
    elif ratio <= INVISIBLE:
        why = (f"at your settings |M|/|F| is at most {ratio:.2g}: memory's effect on the iterates is below "
               "rounding there, so errors would show nothing")
    else:
        why = (f"at your settings |M|/|F| reaches {ratio:.3g} > {FIRST_ORDER_RATIO}, where the report does not take "
               "its evidence at your settings (the first-order theory needs it small)")
    tamed = optimizer.tamed()
    return replace(_tamed_study(tamed, tick), optimizer=repr(tamed), loss=meanings.evidence_loss(tamed), why=why, **common)


#: the kinds of OrderEvidence's fields, for reading one back from the cache
EVIDENCE_SCHEMA = {"setting": "str", "lrs": "numbers", "horizon": "number", "corrected": "number?",
                   "uncorrected": "number?", "errors_corrected": "numbers", "errors_uncorrected": "numbers",
                   "diverged": "str?", "exact_corrected": "bool", "exact_uncorrected": "bool", "optimizer": "str",
                   "loss": "str", "why": "str", "memory_steps": "number", "ratio": "number",
                   "first_order_lr": "number?", "horizon_in_memories": "number"}


def _consistent(value) -> bool:
    """An order study read back: one error per lr, at least two lrs, orders where not exact or diverged."""
    lrs = value["lrs"]
    return (len(lrs) >= 2 and len(value["errors_corrected"]) == len(value["errors_uncorrected"]) == len(lrs)
            and value["setting"] in ("yours", "tamed")
            and (value["diverged"] is not None or value["exact_corrected"] or value["corrected"] is not None)
            and (value["diverged"] is not None or value["exact_uncorrected"] or value["uncorrected"] is not None))


#: the tamed evidence depends only on the tamed optimizer (and memless's code): computed once per
#: process, and kept on disk between runs where :data:`memless.studies.cache.DIRECTORY` is set
_TAMED_STUDIES: Dict[tuple, OrderEvidence] = {}


def _tamed_study(tamed, tick):
    key: Optional[tuple] = tamed._state()
    try:
        hash(key)
    except TypeError:            # unhashable state: no caching
        key = None
    if key is not None and key in _TAMED_STUDIES:
        for _ in range(3):
            tick("order study")
        return _TAMED_STUDIES[key]
    stored = cache.key(tamed, "tamed order study") if cache.DIRECTORY is not None else None
    kept = cache.load(stored, EVIDENCE_SCHEMA, _consistent)
    if kept is not None:
        order = OrderEvidence(**kept)
        for _ in range(3):
            tick("order study")
    else:
        tamed, f, start, _ = problem(tamed, meanings.evidence_loss(tamed))
        lrs, _ = first_order_lrs(tamed, objective(f, start), start, (0.01, 0.005, 0.0025), TAMED_HORIZON)
        order = replace(_study(tamed, f, start, lrs, TAMED_HORIZON, tick, "tamed", keep=False),
                        horizon_in_memories=TAMED_HORIZON / lrs[1] / tamed.memory_length())
        cache.store(stored, asdict(order))
    if key is not None and len(_TAMED_STUDIES) < 256:
        _TAMED_STUDIES[key] = order
    return order


def _fmt(value):
    return "exact" if value is None else f"{value:.2f}"


def _exact(errors: Sequence[float]) -> bool:
    return all(np.isfinite(errors)) and max(errors) < 1e-12


# ----------------------------------------------------------------------------
# Words
# ----------------------------------------------------------------------------


def _measured_list(evidence: List[Evidence]) -> str:
    return ", ".join(f"{e.loss} {e.strength:+.2g}" for e in evidence)


def _verdict(net_effect: Effect, proxy: str, structure: Optional[Structure], evidence: List[Evidence],
             regime: str = "", left_out: int = 0) -> str:
    """The verdict in words: what memory does to N, and why (``left_out``: evidence losses the optimizer
    diverged on, which the measured sentences must not count)."""
    every = _every(left_out, f": it diverged on {'it' if left_out == 1 else 'them'} at this lr")
    if net_effect == Effect.UNRELIABLE:
        return (f"No verdict: {regime}, so the measured strengths ({_measured_list(evidence)}) are not reliable; "
                "see the warnings for how far off the correction may be.")
    if net_effect == Effect.DEPENDS:
        return (f"The sign of memory's effect on {proxy} depends on the loss: measured strengths "
                f"{_measured_list(evidence)}.")
    if net_effect == Effect.NONE:
        why = structure.reason if structure else f"the measured effect is below rounding on {every}"
        return f"Memory does not change {proxy}: {why}."
    does = "penalizes" if net_effect == Effect.REGULARIZING else "rewards large"
    head = f"Memory {'regularizes' if net_effect == Effect.REGULARIZING else 'anti-regularizes'}: it {does} {proxy}."
    if structure is not None and structure.effect != Effect.DEPENDS:
        return f"{head} Why: {structure.reason}."
    if structure is not None:
        return f"{head} Measured on this path ({structure.reason})."
    return f"{head} Measured on {every}: {_measured_list(evidence)}."


def _caveats(analysis: Analysis) -> List[str]:
    """What limits the verdict's reach at the user's settings, each with its number."""
    caveats = []
    order = analysis.order
    if analysis.memory_ratio > RATIO_LIMIT:
        where = (f"; at your hyperparameters |M|/|F| would fall to {FIRST_ORDER_RATIO} near lr ~ "
                 f"{order.first_order_lr:.2g} (lr x {FIRST_ORDER_RATIO}/(|M|/|F|); yours is "
                 f"{analysis.lr / order.first_order_lr:.3g} times that) -- needed for the first-order picture, not "
                 "enough: an order study there decides"
                 if order.first_order_lr else "")
        caveats.append(f"|M|/|F| reaches {analysis.memory_ratio:.3g} along the trajectory (above {RATIO_LIMIT}): the "
                       f"correction is not small at this lr, so the corrected iteration need not track the "
                       f"optimizer here{where}")
    if order.diverged:
        caveats.append(f"no evidence: {order.diverged}")
    elif not order.settled:
        caveats.append(f"the evidence did not settle: orders {_fmt(order.corrected)}/{_fmt(order.uncorrected)} "
                       f"at {order.optimizer} on {order.loss} (pre-asymptotic or outside the theory)")
    return caveats


# ----------------------------------------------------------------------------
# Regime maps: the corrected order and the sign of M over two settings
# ----------------------------------------------------------------------------


@dataclass
class RegimeMap(Viewable):
    """The measured corrected order and the sign of memory's effect over a grid of two settings.

    ``order[i, j]``: the corrected order at ``ys[i]``, ``xs[j]`` from ``steps`` steps at the cell's
    lr and ``2 steps`` at lr/2 (horizon ``steps`` x lr); ``order_uncorrected`` likewise;
    ``strength[i, j]``: <grad N, M>/|<grad N, F>| at the start point (its sign: regularizing > 0).
    """

    optimizer: str
    loss: str
    x: str
    y: str
    xs: np.ndarray
    ys: np.ndarray
    order: np.ndarray
    order_uncorrected: np.ndarray
    strength: np.ndarray
    steps: int
    lr: float
    notes: List[str] = field(default_factory=list)

    def figure(self, ax=None):
        """The map as a picture (:func:`memless.plot.regime_figure`; needs matplotlib)."""
        return view(self, "figure", ax=ax)


def regime_map(optimizer, loss="bilinear", *, x: str = "lr", y: str = "beta2", xs=None, ys=None, grid: int = 12,
               lr: float = 1e-2, steps: int = 20, theta=None, progress=None) -> RegimeMap:
    """Sweep two settings (``"lr"`` or hyperparameter names) over a grid; in each cell run a
    two-rung order study (``steps`` steps at lr, ``2 steps`` at lr/2) and measure the sign of
    <grad N, M> at the start.  The defaults (12 x 12, 20 steps) take about a minute on a
    2-D loss on this 2-core machine.
    """
    from ..optimizers.registry import get_optimizer

    if not isinstance(optimizer, str):
        require_optimizer(optimizer)
    name = optimizer if isinstance(optimizer, str) else optimizer.label
    base = get_optimizer(name) if isinstance(optimizer, str) else optimizer
    allowed = ["lr"] + [hp.name for hp in type(base).hyperparameters]
    for axis in (x, y):
        if not isinstance(axis, str) or axis not in allowed:
            raise MemlessError(f"cannot map {shown(axis)} for {base.label}; allowed: {', '.join(allowed)}")
    if x == y:
        raise MemlessError(f"x and y must differ, got {x!r} twice")
    grid = check_count(grid, "grid", 2, MAX_GRID)
    steps = check_count(steps, "steps", 1, 10 ** 6)
    lr = check_lr(lr)
    check_callback(progress, "progress", "(done, total, label)")
    try:
        xs = np.asarray(_default_axis(x, grid, lr) if xs is None else xs, dtype=float).ravel()
        ys = np.asarray(_default_axis(y, grid, lr) if ys is None else ys, dtype=float).ravel()
    except (TypeError, ValueError):
        raise MemlessError("xs and ys must be lists of numbers") from None
    if not (1 <= xs.size <= MAX_GRID and 1 <= ys.size <= MAX_GRID):
        raise MemlessError(f"xs and ys must hold 1..{MAX_GRID} values each, got {xs.size} and {ys.size}")
    cells = xs.size * ys.size
    check_budget(f"a {ys.size} x {xs.size} regime map of {steps} steps a cell", steps=cells * 9 * steps,
                 corrections=cells * 3 * steps)
    loss_fn, theta, loss_name = resolve_loss(loss, theta)
    orders = np.full((len(ys), len(xs)), np.nan)
    uncorrected, strength = orders.copy(), orders.copy()
    obj = objective(loss_fn, theta, linearize=True)      # every cell measures at the same start
    done = 0
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            settings = {k: v for k, v in ((x, xv), (y, yv)) if k != "lr"}
            h = xv if x == "lr" else (yv if y == "lr" else lr)
            opt = problem(type(base)(**{**base.hyper, **settings}), loss_fn, theta).optimizer
            try:
                study = order_study_unwarned(opt, loss_fn, theta, horizon=steps * h, lrs=[h, h / 2])
                orders[i, j], uncorrected[i, j] = study.order_corrected, study.order_uncorrected
            except DivergenceError:
                pass
            measured = measure_point(opt, obj, theta, h)
            strength[i, j] = sum(measured.along_M.values()) / max(measured.along_F, 1e-300)
            done += 1
            if progress is not None:
                progress(done, len(xs) * len(ys), "regime map")
    return RegimeMap(base.label, loss_name, x, y, xs, ys, orders, uncorrected, strength, steps, lr)


def _default_axis(axis, grid, lr):
    if axis == "lr":
        return np.geomspace(lr / 10, lr * 3, grid)
    return np.linspace(0.05, 0.95, grid)
