"""Trajectories of an optimizer and of its memoryless iteration, and the O(h^2) claim.

* the optimizer itself, Eq. (1): :meth:`MemoryOptimizer.advance` step by step
  (O(1) per step for momentum optimizers, the history form otherwise);
* the memoryless iteration, Eq. (4): ``theta <- theta - h [F^(n)(theta) + M^(n)(theta)]``,
  or without the correction M;
* :func:`order_study`: the global error of both against the optimizer over a
  fixed horizon, for a ladder of learning rates, and the fitted orders
  (Theorem 3.3 / Corollary 3.4: 2 with the correction, 1 without).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .._views import Viewable
from ..checks import (check_budget, check_callback, check_choice, check_flag, check_lr, check_lrs, check_n,
                      check_positive, shown)
from ..contract.optimizer import MemoryOptimizer
from ..engine.corrections import check_order, history_entries, terms_at
from ..engine.second_order import second_order_correction
from ..engine.objective import LossLike, Objective, objective, problem
from ..errors import DivergenceError, MemlessError, OptimizerError, OrderWarning

CORRECTIONS = ("exact", "limit")
#: "streaming": the optimizer's own advance() (O(1) per step for momentum optimizers);
#: "history": F^(n) applied to the whole history, as Eq. (1) writes it ("auto" = "streaming")
FORMS = ("auto", "streaming", "history")


def trajectory(optimizer: MemoryOptimizer, loss: LossLike, theta, lr: float, steps: int, *,
               memoryless: bool = False, corrected: bool = True, correction: str = "exact",
               form: str = "auto", tol: float = 1e-13, order: int = 1) -> np.ndarray:
    """Iterates theta^(0), ..., theta^(steps) as an array of shape (steps + 1, d).

    Parameters
    ----------
    loss : callable or str
        A function theta -> scalar, or a reference-loss name (``theta=None``: its start).
    memoryless : bool
        False (default) runs the optimizer itself (Eq. 1); True runs the memoryless
        iteration (Eq. 4) with ``F^(n)(theta) = F^(n)(theta, ..., theta)``.
    corrected : bool
        With ``memoryless``, add the correction M^(n) (default) or not.
    correction : str
        "exact" uses M^(n) of Eq. (12) at each step, "limit" the n -> infinity M (an O(h^2)
        difference, cheaper for long runs).
    form : str
        For the optimizer itself: "streaming" (its ``advance``, O(1) per step for momentum
        optimizers), "history" (``direction`` applied to the whole history) or "auto".
    order : int
        With ``memoryless`` and ``corrected``: 1 (M1 of Eq. 12) or 2 (M1 + M2, the second-order
        term, :mod:`memless.engine.second_order`: tracks the optimizer to O(h^3)).

    Examples
    --------
    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("heavy-ball", beta=0.5)
    >>> path = memless.trajectory(opt, lambda t: (t ** 2).sum(), np.ones(2), lr=0.1, steps=3)
    >>> path.shape
    (4, 2)
    """
    optimizer, loss, theta, _ = problem(optimizer, loss, theta)
    lr = check_lr(lr)
    memoryless, corrected = check_flag(memoryless, "memoryless"), check_flag(corrected, "corrected")
    steps = check_n(steps, allow_none=False, name="steps")
    check_choice(correction, CORRECTIONS, "correction")
    check_size(steps, theta.size, corrections=steps if memoryless and corrected else 0)
    if memoryless and corrected and correction == "exact":
        check_budget(f"a corrected memoryless path of {steps} steps by the history method",
                     steps=history_entries(optimizer, steps))
    check_choice(form, FORMS, "form")
    tol = check_positive(tol, "tol")
    order = check_order(order)
    if order == 2 and not (memoryless and corrected):
        raise MemlessError("order=2 applies to the corrected memoryless iteration (memoryless=True, corrected=True)")
    obj = objective(loss, theta)
    with np.errstate(over="ignore", invalid="ignore"):
        if memoryless:
            observed: dict = {}
            path = memoryless_path(optimizer, obj, theta, lr, steps, corrected, correction, tol, order=order,
                                   observed=observed)[0]
            if observed.get("next_term", 0.0) > 1.0:
                warnings.warn(f"trajectory: the second-order term exceeds the first along this path (|M2|/|M| reaches "
                              f"{observed['next_term']:.3g}): the expansion in h is outside its range, and the M1 + M2 "
                              "iteration need not track the optimizer (it can diverge); use a smaller lr", OrderWarning,
                              stacklevel=2)
            return path
        return optimizer_path(optimizer, obj.gradient, theta, lr, steps, form=form)


# ----------------------------------------------------------------------------
# The two iterations (inputs already checked)
# ----------------------------------------------------------------------------

def optimizer_path(optimizer: MemoryOptimizer, gradient: Callable, theta, lr: float, steps: int, *,
                   gradient_at_step: Optional[Callable[[int], Callable]] = None, form: str = "auto") -> np.ndarray:
    """The optimizer's own iterates (Eq. 1), one :meth:`~MemoryOptimizer.advance` per step.

    ``gradient_at_step(n)``, if given, is the gradient function step n uses (mini-batches);
    otherwise every step uses ``gradient``.  ``form="history"`` uses the generic
    history-form step of :class:`MemoryOptimizer` whatever the optimizer overrides.
    """
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    theta = _read_only(theta)
    begin, advance = optimizer.initial_state, optimizer.advance
    if form == "history":
        begin = MemoryOptimizer.initial_state.__get__(optimizer)
        advance = MemoryOptimizer.advance.__get__(optimizer)
    state = begin(theta)
    for n in range(steps):
        g = gradient if gradient_at_step is None else gradient_at_step(n)
        F, state = _call(optimizer, "direction()", n, advance, state, theta, g, n)
        theta = _read_only(theta - lr * _direction_array(optimizer, F, theta, n, g))
        _store(optimizer, path, n + 1, theta, lr)
    return path


def _read_only(theta):
    """An iterate the optimizer's code may read but not change in place (its history is the path)."""
    theta = np.array(theta, dtype=float)
    theta.setflags(write=False)
    return theta


def _call(optimizer, what, n, function, *args, **kwargs):
    """Call the optimizer's own code; anything it raises becomes an OptimizerError naming it."""
    try:
        return function(*args, **kwargs)
    except MemlessError:
        raise
    except Exception as exc:
        hint = (" (the optimizer must not change its history or theta in place: they are read-only)"
                if "read-only" in str(exc) else "")
        raise OptimizerError(f"{optimizer.label}: {what} raised {type(exc).__name__} at step {n}: {exc}{hint}") from exc


def memoryless_path(optimizer: MemoryOptimizer, obj: Objective, theta, lr: float, steps: int,
                    corrected: bool = True, correction: str = "exact",
                    tol: float = 1e-13, order: int = 1, observed: Optional[dict] = None) -> Tuple[np.ndarray, float]:
    """The memoryless iteration (Eq. 4) and the largest |M^(n)| / |F^(n)| met along it; with
    ``order=2`` the step adds the second-order term M2 (its limit) to M^(n), and ``observed``
    (a dict, if given) receives ``"next_term"``: the largest |M2| / |M| met (M the limit correction)."""
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    ratio = 0.0
    for n in range(steps):
        gradient = obj.frozen(theta, linearize=corrected)
        F = _call(optimizer, "direction()", n, optimizer.memoryless_direction, theta, gradient, n)
        F = _direction_array(optimizer, F, theta, n, gradient)
        step = F
        if corrected:
            at = None if correction == "limit" else n
            M = _call(optimizer, "the correction (differentiating direction())", n, terms_at, optimizer, obj, theta,
                      lr, at, gradient=gradient, split=False, tol=tol)["total"]
            step = F + M
            if order == 2:
                M2 = _call(optimizer, "the second-order term", n, second_order_correction, optimizer, obj, theta, lr,
                           None if correction == "limit" else n)
                step = step + M2
                if observed is not None:
                    # against the limit M1 (M2 is a limit too; M1^(n) is still filling in the first steps)
                    limit = M if correction == "limit" else terms_at(optimizer, obj, theta, lr, None, gradient=gradient,
                                                                      split=False, tol=tol)["total"]
                    size = np.linalg.norm(limit)
                    if size > 0:
                        observed["next_term"] = max(observed.get("next_term", 0.0), float(np.linalg.norm(M2) / size))
            scale = np.linalg.norm(F)
            ratio = max(ratio, float(np.linalg.norm(M) / scale) if scale > 0 else 0.0)
        theta = theta - lr * step
        _store(optimizer, path, n + 1, theta, lr)
    return path, ratio


def _direction_array(optimizer, F, theta, n, gradient=None):
    """F as a float array of theta's shape; a non-finite F at a finite iterate with a finite
    gradient is the optimizer's fault (not divergence) and says so."""
    try:
        F = np.asarray(F, dtype=float)
    except (TypeError, ValueError):
        raise OptimizerError(f"{optimizer.label}: direction() returned {type(F).__name__} at step {n}; "
                             f"it must return an array of theta's shape {theta.shape}") from None
    if F.shape != theta.shape:
        raise OptimizerError(f"{optimizer.label}: direction() returned shape {F.shape} at step {n}; "
                             f"it must return theta's shape {theta.shape}")
    if not np.all(np.isfinite(F)) and np.all(np.isfinite(theta)) and gradient is not None:
        g = np.asarray(gradient(theta), dtype=float)
        if np.all(np.isfinite(g)):
            size = max(float(np.max(np.abs(theta), initial=0.0)), float(np.max(np.abs(g), initial=0.0)))
            if size > RUNAWAY:        # a run already far out (a polynomial Phi overflows there): divergence
                raise DivergenceError(f"{optimizer.label} diverged at step {n}: the iterate or its gradient "
                                      f"reached {size:.1e} and the direction overflowed; use a smaller lr")
            raise OptimizerError(f"{optimizer.label}: direction() returned a non-finite value at step {n} where the "
                                 f"iterate and the loss gradient are finite: the optimizer, not the lr, is at fault")
    return F


#: an iterate or gradient beyond this is a run gone astray, not a model's value: a direction that overflows
#: there is divergence (an optimizer whose F is not finite at moderate values is at fault)
RUNAWAY = 1e30


def check_size(steps: int, d: int, name: str = "steps", corrections: int = 0) -> int:
    """Refuse, before any work, a path beyond the shared budget (:func:`memless.checks.check_budget`:
    ``memless.checks.MAX_STEPS`` steps, ``MAX_BYTES`` bytes of iterates, ``MAX_CORRECTIONS``)."""
    check_budget(f"{name}={steps}", steps=steps, corrections=corrections, nbytes=(steps + 1) * d * 8)
    return steps


def _store(optimizer, path, n, theta, lr):
    if not np.all(np.isfinite(theta)):
        raise DivergenceError(
            f"{optimizer.label} diverged at step {n} (lr={lr:g}): the iterate is not finite; use a smaller lr")
    path[n] = theta


# ----------------------------------------------------------------------------
# The O(h^2) claim
# ----------------------------------------------------------------------------


@dataclass
class OrderStudy(Viewable):
    """Global errors of the memoryless iterations against the optimizer, per learning rate.

    ``errors_*[i]`` is ``max_{n <= horizon/lrs[i]} ||theta^(n) - theta~^(n)||_inf``: the largest
    distance over the whole path (not at its end); ``order_*`` is the least-squares slope of
    log(error) against log(lr).
    """

    lrs: List[float]
    steps: List[int]
    horizon: float
    errors_corrected: List[float]
    errors_uncorrected: List[float]
    order_corrected: float
    order_uncorrected: float
    #: largest |M^(n)| / |F^(n)| along each corrected memoryless path: the first-order
    #: theory needs it small
    memory_ratios: List[float] = field(default_factory=list)
    #: with ``order=2``: the errors of the iteration with M1 + M2, and their fitted order (want 3; NaN where
    #: the M1 + M2 iteration is outside its range: see :func:`order_study`)
    errors_second: Optional[List[float]] = None
    order_second: Optional[float] = None
    #: with ``order=2``: the largest |M2| / |M^(n)| along each M1 + M2 path
    next_term_ratios: Optional[List[float]] = None

    @property
    def exact(self) -> bool:
        """Both memoryless iterations reproduce the optimizer to rounding (no memory)."""
        return max(self.errors_corrected) < 1e-12 and max(self.errors_uncorrected) < 1e-12

    def summary(self) -> str:
        extra = self.errors_second
        second = extra is not None
        rows = [f"{'lr':>10} {'steps':>7}" + (f" {'err M1+M2':>12}" if second else "")
                + f" {'err corrected':>14} {'err uncorrected':>16} {'|M|/|F|':>9}"]
        for i, (lr, n, ec, eu, r) in enumerate(zip(self.lrs, self.steps, self.errors_corrected,
                                                   self.errors_uncorrected, self.memory_ratios)):
            rows.append(f"{lr:>10.3g} {n:>7d}" + (f" {extra[i]:>12.3e}" if extra is not None else "")
                        + f" {ec:>14.3e} {eu:>16.3e} {r:>9.3g}")
        def fitted(value):
            return f"{value:.2f}" if value is not None and np.isfinite(value) else "not fitted (see the warning)"

        rows.append("order: " + (f"with M1+M2 {fitted(self.order_second)}, " if second else "")
                    + f"corrected {fitted(self.order_corrected)}, uncorrected {fitted(self.order_uncorrected)}")
        return "\n".join(rows)


def fitted_order(lrs: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) on log(lr) (nan where an error is not positive)."""
    x, y = np.asarray(lrs, dtype=float), np.asarray(errors, dtype=float)
    if np.any(~(y > 0)) or np.any(~np.isfinite(y)):
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def order_study(optimizer: MemoryOptimizer, loss: LossLike, theta, horizon: float, lrs: Sequence[float], *,
                correction: str = "exact", tol: float = 1e-13,
                callback: Optional[Callable[[float, float, float], None]] = None, order: int = 1) -> OrderStudy:
    """Measure Theorem 3.3: error O(lr^2) with the correction, O(lr) without.

    Each lr runs ``round(horizon / lr)`` steps of the optimizer and of both
    memoryless iterations from the same ``theta``; ``callback(lr, error_corrected,
    error_uncorrected)``, if given, is called after each.  ``order=2`` also runs the
    iteration with M1 + M2 (:mod:`memless.engine.second_order`): ``errors_second`` and
    ``order_second`` (want 3).  Where that iteration is outside its range -- an error not finite,
    not falling as lr falls, or at the smallest lr larger than with M1 alone (the limit M2 is
    large: decays near 1, or a large lr) -- ``order_second`` is NaN and an
    :class:`~memless.OrderWarning` says why, with the largest |M2|/|M| met.

    >>> import memless, numpy as np
    >>> study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5),
    ...                             lambda t: (t ** 4).sum() / 4 + t[0] * t[1], np.array([0.5, 0.2]),
    ...                             horizon=0.5, lrs=[0.01, 0.005, 0.0025])
    >>> round(study.order_corrected), round(study.order_uncorrected)
    (2, 1)
    """
    optimizer, loss, theta, _ = problem(optimizer, loss, theta)
    horizon = check_positive(horizon, "horizon")
    lrs = check_lrs(lrs)
    if horizon < max(lrs):
        raise MemlessError(f"horizon={shown(horizon)} is shorter than one step of the largest lr ({max(lrs)!r}); "
                           "it must be at least max(lrs)")
    total = sum(max(1, int(round(horizon / lr))) for lr in lrs)
    check_size(int(round(horizon / min(lrs))), theta.size, name="horizon/min(lrs)")
    check_budget(f"order_study over horizon={shown(horizon)} at lrs={shown(lrs)}", steps=3 * total, corrections=total)
    check_choice(correction, CORRECTIONS, "correction")
    check_budget(f"order_study over horizon={shown(horizon)} by the history method",
                 steps=sum(history_entries(optimizer, max(1, int(round(horizon / lr)))) for lr in lrs)
                 if correction == "exact" else 0)
    tol = check_positive(tol, "tol")
    check_callback(callback, "callback", "(lr, error_corrected, error_uncorrected)")
    order = check_order(order)
    obj = objective(loss, theta)
    with np.errstate(over="ignore", invalid="ignore"):
        return _order_study(optimizer, obj, theta, horizon, lrs, correction, tol, callback, order)


def order_study_unwarned(*args, **kwargs) -> OrderStudy:
    """:func:`order_study` for callers that read NaN orders themselves (the report, the kit, the
    regime map): no :class:`~memless.OrderWarning`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OrderWarning)
        return order_study(*args, **kwargs)


def _order_study(optimizer, obj, theta, horizon, lrs, correction, tol, callback, order=1):
    steps, corrected, uncorrected, ratios, second, next_terms = [], [], [], [], [], []
    for lr in lrs:
        n = max(1, int(round(horizon / lr)))
        reference = optimizer_path(optimizer, obj.gradient, theta, lr, n)
        if order == 2:
            observed: dict = {}
            try:
                with_m2, _ = memoryless_path(optimizer, obj, theta, lr, n, True, correction, tol, order=2,
                                             observed=observed)
                second.append(float(np.max(np.abs(reference - with_m2))))
            except DivergenceError:
                second.append(float("inf"))
            next_terms.append(observed.get("next_term", 0.0))
        with_m, ratio = memoryless_path(optimizer, obj, theta, lr, n, True, correction, tol)
        without_m, _ = memoryless_path(optimizer, obj, theta, lr, n, False, correction, tol)
        steps.append(n)
        corrected.append(float(np.max(np.abs(reference - with_m))))
        uncorrected.append(float(np.max(np.abs(reference - without_m))))
        ratios.append(float(ratio))
        if callback is not None:
            callback(lr, corrected[-1], uncorrected[-1])
    study = OrderStudy(lrs, steps, float(horizon), corrected, uncorrected,
                       fitted_order(lrs, corrected), fitted_order(lrs, uncorrected), ratios,
                       second if order == 2 else None, fitted_order(lrs, second) if order == 2 else None,
                       next_terms if order == 2 else None)
    if order == 2:
        by_lr = [e for _, e in sorted(zip(lrs, second))]            # smallest lr first
        smallest = int(np.argmin(lrs))
        trouble = ("an error is not finite (the M1 + M2 iteration diverged)" if not all(np.isfinite(second)) else
                   "the error does not fall as lr falls" if any(a >= b for a, b in zip(by_lr, by_lr[1:])) else
                   f"at the smallest lr its error {second[smallest]:.3g} is larger than with M1 alone "
                   f"({corrected[smallest]:.3g})" if second[smallest] > corrected[smallest] else "")
        if trouble:
            study.order_second = float("nan")
            warnings.warn(f"order_study: with M1 + M2 {trouble}: the second-order iteration is outside its range "
                          f"here (|M2|/|M| reaches {max(next_terms):.3g}); no order is fitted. Smaller lrs, or "
                          "decays further from 1, bring it back", OrderWarning, stacklevel=3)
    for label, order, errors in (("corrected", study.order_corrected, corrected),
                                 ("uncorrected", study.order_uncorrected, uncorrected)):
        if not np.isfinite(order):
            why = ("an error is exactly 0 (a stationary start, or no memory: nothing to fit)"
                   if all(np.isfinite(errors)) else "an error is not finite (a rung diverged)")
            warnings.warn(f"order_study: the {label} order is NaN: {why}; errors {shown(errors)}", OrderWarning,
                          stacklevel=3)
    return study


def first_order_lrs(optimizer: MemoryOptimizer, obj: Objective, theta, lrs: Sequence[float], horizon: float, *,
                    target: float = 0.2, max_reduction: float = 16.0) -> Tuple[List[float], float]:
    """``lrs`` scaled down (at most ``max_reduction`` times) until the largest |M|/|F| met along the
    corrected memoryless path at the largest lr is at most ``target``: where the first-order theory
    applies.  Returns (scaled lrs, that largest |M|/|F|)."""
    scale, ratio = 1.0, float("nan")
    for _ in range(4):
        lr = max(lrs) * scale
        with np.errstate(over="ignore", invalid="ignore"):
            _, ratio = memoryless_path(optimizer, obj, theta, lr, max(1, int(round(horizon / lr))), True, "exact")
        if ratio <= target or scale <= 1.0 / max_reduction:
            break
        scale = max(scale * max(target / ratio, 0.25), 1.0 / max_reduction)
    return [lr * scale for lr in lrs], float(ratio)
