"""The conformance kit: one call that checks an optimizer plugin end to end.

>>> import memless.testing
>>> result = memless.testing.check_optimizer("heavy-ball", orders=False)
>>> result.passed
True

:func:`check_optimizer` runs, on the kit's reference losses,

* ``direction``  -- F^(n) is finite, has theta's shape, and ``memoryless_direction``
  agrees with ``direction`` at a constant history;
* ``streaming``  -- the optimizer's own ``advance`` steps (O(1) per step for a
  MomentumOptimizer) equal the history form F^(n) applied to the whole history;
* ``correction`` -- the engine's M^(n) equals a central finite difference of
  F^(n) along the history direction of Eq. (12), and its own shortcut (the
  closed-form channel sums of a MomentumOptimizer) equals the generic history JVPs;
* ``closed form`` -- where every memory channel carries ``closed_form(h, theta, g, HF)``,
  each equals the engine's forward-mode term at the limit (the engine uses them
  only then);
* ``order``      -- on a tamed copy (:func:`tame`: decays 0.5, smoothing
  constants large, where the first-order theory holds), the corrected memoryless
  iteration has empirical order ~2 and the uncorrected one ~1 (Theorem 3.3).

A plugin's own test suite needs one line::

    def test_conformance():
        memless.testing.check_optimizer(MyOptimizer(beta=0.5))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .checks import check_callback
from .contract.optimizer import MemoryOptimizer
from .engine.corrections import correction, memory_profile, terms_at
from .engine.objective import objective, problem
from .errors import LossError, MemlessError
from .losses import REFERENCE_LOSSES
from .optimizers.registry import get_optimizer
from .studies.analysis import print_progress
from .studies.meanings import MATRIX_LOSSES
from .studies.trajectories import first_order_lrs, optimizer_path, order_study_unwarned

#: (name, loss, start) the kit runs on by default
KIT_LOSSES = ("curvy", "logistic")


class ConformanceError(AssertionError):
    """An optimizer failed the conformance kit; the message lists every failed check."""


@dataclass
class Check:
    name: str
    loss: str
    passed: bool
    detail: str = ""


@dataclass
class Conformance:
    optimizer: str
    checks: List[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> List[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        lines = [f"conformance of {self.optimizer}: {'passed' if self.passed else 'FAILED'}"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name} on {c.loss}: {c.detail}")
        return "\n".join(lines)


def tame(optimizer: MemoryOptimizer) -> MemoryOptimizer:
    """A copy of ``optimizer`` with every hyperparameter that declares a ``tame`` value set to it
    (:meth:`MemoryOptimizer.tamed`)."""
    return optimizer.tamed()


def check_optimizer(optimizer, *, losses: Optional[Sequence[Tuple]] = None, orders: bool = True,
                    lrs: Sequence[float] = (0.01, 0.005, 0.0025), horizon: float = 0.5,
                    order_band: Tuple[float, float] = (0.3, 0.2), adapt_lrs: bool = True, rtol: float = 1e-5,
                    raise_on_failure: bool = True, progress: Any = None) -> Conformance:
    """Run the conformance checks; raise :class:`ConformanceError` naming each failure.

    ``optimizer``: an instance or a registered name.  ``losses``: a list of
    ``(name, loss, theta0)`` (theta0 may be a dict of named arrays), default the kit's
    reference losses ("curvy", "logistic"; "factorization", "network" for an optimizer
    that acts on matrices).  ``order_band``:
    allowed distance of the corrected / uncorrected orders from 2 / 1.  ``adapt_lrs``:
    scale ``lrs`` down (at most 16x) until the correction is small along the path,
    where the first-order theory applies; False runs exactly ``lrs``.  ``progress``: called as
    ``progress(done, total, label)`` after each check (``print`` of a line, a progress bar's update),
    or ``True`` for a line on stderr per check (the order studies take seconds each).
    """
    if isinstance(optimizer, str):
        optimizer = get_optimizer(optimizer)
    if not isinstance(optimizer, MemoryOptimizer):
        raise MemlessError(f"check_optimizer needs a MemoryOptimizer or a registered name, got {optimizer!r}")
    if losses is None:
        names = MATRIX_LOSSES if optimizer.needs_matrices else KIT_LOSSES
        losses = [(name, REFERENCE_LOSSES[name].loss, REFERENCE_LOSSES[name].start) for name in names]
    result = Conformance(repr(optimizer))
    unbound = optimizer
    if progress is True:
        progress = print_progress("check_optimizer")
    if progress is not None:
        check_callback(progress, "progress", "(done, total, label)")
    total, done = len(losses) * (5 if orders else 4), 0
    for loss_name, loss, theta in losses:
        try:
            optimizer, loss, theta, _ = problem(unbound, loss, theta)
        except LossError:                    # the loss itself is wrong: that is the caller's error
            raise
        except MemlessError as exc:          # the optimizer cannot act on this loss's layout
            result.checks.append(Check("layout", loss_name, False, str(exc)))
            continue
        obj = objective(loss, theta)
        checks: List[Tuple[str, Callable]] = [("direction", _check_direction), ("streaming", _check_streaming),
                  ("correction", _check_correction), ("closed form", _check_closed_forms)]
        if orders:
            checks.append(("order", lambda o, ob, t, loss=loss: _check_order(
                o, loss, t, lrs, horizon, order_band, max_reduction=16 if adapt_lrs else 1)))
        for name, check in checks:
            try:
                with np.errstate(all="ignore"):
                    outcome = check(optimizer, obj, theta) if name != "correction" else check(optimizer, obj, theta, rtol)
            except Exception as exc:  # a check that crashes is a failed check, with the reason
                outcome = (False, f"raised {type(exc).__name__}: {exc}")
            if outcome is not None:
                result.checks.append(Check(name, loss_name, *outcome))
            done += 1
            if progress is not None:
                progress(done, total, f"{name} on {loss_name}")
    if raise_on_failure and not result.passed:
        raise ConformanceError("; ".join(f"{c.name} on {c.loss}: {c.detail}" for c in result.failures)
                               + f" [{result.optimizer}]")
    return result


# ----------------------------------------------------------------------------
# The checks: each returns (passed, detail), or None when it does not apply
# ----------------------------------------------------------------------------


def _history_of(optimizer, obj, theta, steps=6, lr=0.01):
    path = optimizer_path(optimizer, obj.gradient, theta, lr, steps, form="history")
    return [row for row in path[::-1]]          # newest first


def _check_direction(optimizer, obj, theta):
    history = _history_of(optimizer, obj, theta)
    for n in (0, 1, 5):
        F = np.asarray(optimizer.direction(history[-(n + 1):], obj.gradient), dtype=float)
        if F.shape != theta.shape:
            return False, f"F^({n}) has shape {F.shape}, theta has {theta.shape}"
        if not np.all(np.isfinite(F)):
            return False, f"F^({n}) is not finite: {F}"
        frozen = np.asarray(optimizer.memoryless_direction(theta, obj.frozen(theta), n), dtype=float)
        plain = np.asarray(optimizer.direction([theta] * (n + 1), obj.gradient), dtype=float)
        if not np.allclose(frozen, plain, rtol=1e-10, atol=1e-14):
            return False, (f"memoryless_direction(theta, n={n}) = {frozen} differs from "
                           f"direction([theta] * {n + 1}) = {plain}")
    return True, "F^(n) finite, of theta's shape, memoryless_direction consistent"


def _check_streaming(optimizer, obj, theta, steps=25, lr=0.01):
    streaming = optimizer_path(optimizer, obj.gradient, theta, lr, steps)
    history = optimizer_path(optimizer, obj.gradient, theta, lr, steps, form="history")
    gap = np.max(np.abs(streaming - history), axis=1)
    if not np.all(gap <= 1e-9 * (1 + np.max(np.abs(history)))):
        step = int(np.argmax(gap > 1e-9 * (1 + np.max(np.abs(history)))))
        return False, f"streaming and history forms differ by {gap[step]:.3g} at step {step}"
    return True, f"streaming = history form over {steps} steps (max gap {np.max(gap):.1e})"


def finite_difference_correction(optimizer: MemoryOptimizer, gradient, theta, lr: float, n: int,
                                 step: float = 1e-5) -> np.ndarray:
    """Eq. (12) as a central difference of F^(n) along the history direction (no JVP)."""
    vs, v = [], np.zeros_like(theta)
    for k in range(1, n + 1):
        v = v + np.asarray(optimizer.direction([theta] * (n - k + 1), gradient), dtype=float)
        vs.append(v)
    delta = step / max(1.0, max(np.max(np.abs(w)) for w in vs))
    plus = np.asarray(optimizer.direction([theta] + [theta + delta * w for w in vs], gradient), dtype=float)
    minus = np.asarray(optimizer.direction([theta] + [theta - delta * w for w in vs], gradient), dtype=float)
    return lr * (plus - minus) / (2 * delta)


def _check_correction(optimizer, obj, theta, rtol, lr=0.01):
    details = []
    for n in (3, 12):
        expected = finite_difference_correction(optimizer, obj.gradient, theta, lr, n)
        got = terms_at(optimizer, obj, theta, lr, n, split=False)["total"]
        generic = correction(optimizer, obj, theta, lr, n, method="history")
        if not np.allclose(got, generic, rtol=1e-8, atol=1e-12 * (1 + np.max(np.abs(generic)))):
            return False, (f"the engine's shortcut M^({n}) = {got} differs from the history JVP {generic}: "
                           "the channels do not describe direction()")
        F = np.asarray(optimizer.direction([theta] * (n + 1), obj.gradient), dtype=float)
        scale = max(np.max(np.abs(expected)), 1e-8 * lr * np.max(np.abs(F)))
        error = np.max(np.abs(got - expected))
        if not error <= rtol * scale + 1e-12:
            return False, (f"engine M^({n}) = {got} but a finite difference of F^({n}) along the history gives "
                           f"{expected} (relative error {error / scale:.2g}): direction() is not differentiable "
                           "as written (use autograd.numpy, no detached values)")
        details.append(f"n={n}: rel. error {error / scale:.1e}")
    return True, "engine M^(n) = finite-difference Eq. (12), " + ", ".join(details)


def _check_closed_forms(optimizer, obj, theta):
    """Each memory channel's closed_form equals the engine's forward-mode term (None: no closed forms)."""
    from .engine.corrections import CLOSED_FORM_WRONG, closed_form_check
    checked = closed_form_check(optimizer, obj, theta)
    if checked is None:
        return None
    error, words = checked
    if error != error:                   # NaN: the forward-mode pass itself could not run here
        return True, f"not checked: {words}"
    if error > CLOSED_FORM_WRONG:
        return False, words + (" (the engine uses a channel's closed form only where it matches on the engine's own "
                               "probe loss: correct it, or drop it)")
    return True, f"every memory channel's closed_form equals the engine's term at the limit (to {error:.1e} of |M|)"


def _check_order(optimizer, loss, theta, lrs, horizon, band, target=0.2, max_reduction=16):
    """The order study, at lrs scaled down (at most 16x) until the largest |M|/|F| met along
    the corrected path at the largest lr is <= target: where the first-order theory applies."""
    tamed = tame(optimizer)
    profile = memory_profile(tamed, loss, theta)
    if not profile.decays:
        return False, f"memory does not decay ({profile.reason}): Theorem 3.3 does not apply, no order 2 is expected"
    obj = objective(loss, theta)
    lrs, _ = first_order_lrs(tamed, obj, theta, lrs, horizon, target=target, max_reduction=max_reduction)
    study = order_study_unwarned(tamed, loss, theta, horizon=horizon, lrs=lrs)
    if study.exact:
        return True, "the memoryless iteration reproduces the optimizer exactly (no memory)"
    ok = (abs(study.order_corrected - 2) <= band[0] and abs(study.order_uncorrected - 1) <= band[1])
    detail = (f"orders {study.order_corrected:.2f} (with M, want 2 +- {band[0]}) and "
              f"{study.order_uncorrected:.2f} (without, want 1 +- {band[1]}) at lr "
              f"{', '.join(f'{lr:.3g}' for lr in lrs)} for {tamed!r}")
    return ok, detail
