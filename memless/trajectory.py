"""Trajectories of an optimizer and of its memoryless iteration, and the O(h^2) claim.

* the optimizer itself, Eq. (1): streaming (O(1) per step) for momentum
  optimizers, the history form otherwise;
* the memoryless iteration, Eq. (4): ``theta <- theta - h [F^(n)(theta) + M^(n)(theta)]``,
  or without the correction M;
* :func:`order_study`: the global error of both against the optimizer over a
  fixed horizon, for a ladder of learning rates, and the fitted orders
  (Theorem 3.3 / Corollary 3.4: 2 with the correction, 1 without).
"""
import math
from dataclasses import dataclass, field
from typing import List

import numpy as np

from .core import MomentumOptimizer
from .engine import history_correction, momentum_terms
from .errors import DivergenceError, MemlessError
from .problem import check_lr, check_n, check_optimizer, check_theta, objective

FORMS = ("auto", "streaming", "history")
CORRECTIONS = ("exact", "limit")


def trajectory(optimizer, loss, theta, lr, steps, *, memoryless=False, corrected=True,
               correction="exact", form="auto", tol=1e-13):
    """Iterates theta^(0), ..., theta^(steps) as an array of shape (steps + 1, d).

    Parameters
    ----------
    memoryless : False (default) runs the optimizer itself (Eq. 1); True runs the
        memoryless iteration (Eq. 4) with ``F^(n)(theta) = F^(n)(theta, ..., theta)``.
    corrected : with ``memoryless``, add the correction M^(n) (default) or not.
    correction : "exact" uses M^(n) of Eq. (12) at each step, "limit" the n -> infinity
        M (an O(h^2) difference, cheaper for long runs).
    form : for the optimizer itself: "streaming" (momentum optimizers, O(1) per
        step), "history" (F^(n) applied to the whole history) or "auto".

    Example
    -------
    >>> import memless, numpy as np
    >>> opt = memless.get_optimizer("heavy-ball", beta=0.5)
    >>> path = memless.trajectory(opt, lambda t: (t ** 2).sum(), np.ones(2), lr=0.1, steps=3)
    >>> path.shape
    (4, 2)
    """
    check_optimizer(optimizer)
    theta = check_theta(theta)
    lr = check_lr(lr)
    steps = check_n(steps, allow_none=False)
    if correction not in CORRECTIONS:
        raise MemlessError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if form not in FORMS:
        raise MemlessError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    obj = objective(loss, theta)
    with np.errstate(over="ignore", invalid="ignore"):
        return _run(optimizer, obj, theta, lr, steps, memoryless, corrected, correction, form, tol)


def _run(optimizer, obj, theta, lr, steps, memoryless, corrected, correction, form, tol):
    if memoryless:
        path, _ = _memoryless(optimizer, obj, theta, lr, steps, corrected, correction, tol)
        return path
    if form == "auto":
        form = "streaming" if isinstance(optimizer, MomentumOptimizer) else "history"
    if form == "streaming":
        if not isinstance(optimizer, MomentumOptimizer):
            raise MemlessError(f"form='streaming' needs a MomentumOptimizer; {type(optimizer).__name__} is not one")
        return _streaming(optimizer, obj, theta, lr, steps)
    return _history(optimizer, obj, theta, lr, steps)


def _store(path, n, theta, lr):
    if not np.all(np.isfinite(theta)):
        raise DivergenceError(
            f"the iteration diverged at step {n} (lr={lr:g}): the iterate is not finite; use a smaller lr")
    path[n] = theta


def _streaming(optimizer, obj, theta, lr, steps):
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    memory = optimizer.initial_memory(theta)
    for n in range(steps):
        F, memory = optimizer.advance(memory, theta, obj.gradient(theta), n)
        theta = theta - lr * np.asarray(F, dtype=float)
        _store(path, n + 1, theta, lr)
    return path


def _history(optimizer, obj, theta, lr, steps):
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    newest_last = [theta]
    for n in range(steps):
        F = optimizer.direction(newest_last[::-1], obj.gradient)
        theta = theta - lr * np.asarray(F, dtype=float)
        _store(path, n + 1, theta, lr)
        newest_last.append(theta)
    return path


def _memoryless(optimizer, obj, theta, lr, steps, corrected, correction, tol):
    """The memoryless path and the largest |M^(n)| / |F^(n)| met along it."""
    path = np.empty((steps + 1, theta.size))
    path[0] = theta
    ratio = 0.0
    momentum = isinstance(optimizer, MomentumOptimizer)
    for n in range(steps):
        gradient = obj.frozen(theta, linearize=corrected)
        F = np.asarray(optimizer.memoryless_direction(theta, gradient, n), dtype=float)
        step = F
        if corrected:
            at = None if correction == "limit" else n
            if momentum:
                M = momentum_terms(optimizer, obj, theta, lr, at, tol, gradient=gradient, split=False)["total"]
            else:
                M, _ = history_correction(optimizer, obj, theta, lr, at, tol)
            step = F + M
            scale = np.linalg.norm(F)
            ratio = max(ratio, np.linalg.norm(M) / scale if scale > 0 else 0.0)
        theta = theta - lr * step
        _store(path, n + 1, theta, lr)
    return path, ratio


# ----------------------------------------------------------------------------
# The O(h^2) claim
# ----------------------------------------------------------------------------


@dataclass
class OrderStudy:
    """Global errors of the memoryless iterations against the optimizer, per learning rate.

    ``errors_*[i]`` is ``max_{n <= horizon/lrs[i]} ||theta^(n) - theta~^(n)||_inf``;
    ``order_*`` is the least-squares slope of log(error) against log(lr).
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

    def summary(self):
        rows = [f"{'lr':>10} {'steps':>7} {'err corrected':>14} {'err uncorrected':>16} {'|M|/|F|':>9}"]
        for lr, n, ec, eu, r in zip(self.lrs, self.steps, self.errors_corrected,
                                    self.errors_uncorrected, self.memory_ratios):
            rows.append(f"{lr:>10.3g} {n:>7d} {ec:>14.3e} {eu:>16.3e} {r:>9.3g}")
        rows.append(f"order: corrected {self.order_corrected:.2f}, uncorrected {self.order_uncorrected:.2f}")
        return "\n".join(rows)


def fitted_order(lrs, errors):
    """Least-squares slope of log(error) on log(lr)."""
    lrs, errors = np.asarray(lrs, dtype=float), np.asarray(errors, dtype=float)
    if np.any(errors <= 0):
        return float("nan")
    return float(np.polyfit(np.log(lrs), np.log(errors), 1)[0])


def order_study(optimizer, loss, theta, horizon, lrs, *, correction="exact", tol=1e-13, callback=None):
    """Measure Theorem 3.3: error O(lr^2) with the correction, O(lr) without.

    Each lr runs ``round(horizon / lr)`` steps of the optimizer and of both
    memoryless iterations from the same ``theta``; ``callback(lr, error_corrected,
    error_uncorrected)``, if given, is called after each.

    >>> import memless, numpy as np
    >>> study = memless.order_study(memless.get_optimizer("heavy-ball", beta=0.5),
    ...                             lambda t: (t ** 4).sum() / 4 + t[0] * t[1], np.array([0.5, 0.2]),
    ...                             horizon=0.5, lrs=[0.01, 0.005, 0.0025])
    >>> round(study.order_corrected), round(study.order_uncorrected)
    (2, 1)
    """
    check_optimizer(optimizer)
    theta = check_theta(theta)
    if isinstance(horizon, bool) or not isinstance(horizon, (int, float)) or not horizon > 0 or not math.isfinite(horizon):
        raise MemlessError(f"horizon must be a finite number > 0, got {horizon!r}")
    lrs = [check_lr(lr) for lr in lrs]
    if len(lrs) < 2:
        raise MemlessError(f"order_study needs at least two learning rates to fit an order, got {len(lrs)}")
    if correction not in CORRECTIONS:
        raise MemlessError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    obj = objective(loss, theta)
    with np.errstate(over="ignore", invalid="ignore"):
        return _order_study(optimizer, obj, theta, horizon, lrs, correction, tol, callback)


def _order_study(optimizer, obj, theta, horizon, lrs, correction, tol, callback):
    steps, corrected, uncorrected, ratios = [], [], [], []
    for lr in lrs:
        n = max(1, int(round(horizon / lr)))
        if isinstance(optimizer, MomentumOptimizer):
            reference = _streaming(optimizer, obj, theta, lr, n)
        else:
            reference = _history(optimizer, obj, theta, lr, n)
        with_m, ratio = _memoryless(optimizer, obj, theta, lr, n, True, correction, tol)
        without_m, _ = _memoryless(optimizer, obj, theta, lr, n, False, correction, tol)
        steps.append(n)
        corrected.append(float(np.max(np.abs(reference - with_m))))
        uncorrected.append(float(np.max(np.abs(reference - without_m))))
        ratios.append(float(ratio))
        if callback is not None:
            callback(lr, corrected[-1], uncorrected[-1])
    return OrderStudy(lrs, steps, float(horizon), corrected, uncorrected,
                      fitted_order(lrs, corrected), fitted_order(lrs, uncorrected), ratios)
