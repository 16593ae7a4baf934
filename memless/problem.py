"""Input checks shared by the engine and the trajectories: theta, lr, n and the loss.

Every check raises a :class:`~memless.errors.MemlessError` whose one-line
message names the bad value and what is allowed.
"""
import math
import numbers

import numpy as np
from autograd import grad as _autograd_grad, value_and_grad as _value_and_grad

from .errors import LossError, MemlessError
from .core import MemoryOptimizer


def check_optimizer(optimizer):
    if not isinstance(optimizer, MemoryOptimizer):
        raise MemlessError(
            f"optimizer must be a memless.MemoryOptimizer (e.g. memless.get_optimizer('adamw')), "
            f"got {type(optimizer).__name__}")
    return optimizer


def check_theta(theta, name="theta"):
    """theta as a finite 1-D float array."""
    try:
        arr = np.asarray(theta, dtype=float)
    except (TypeError, ValueError):
        raise LossError(f"{name} must be a 1-D array of real numbers, got {type(theta).__name__}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise LossError(
            f"{name} must be a non-empty 1-D array of parameters, got shape {arr.shape}; "
            "flatten structured parameters first (e.g. autograd.misc.flatten)")
    if not np.all(np.isfinite(arr)):
        raise LossError(f"{name} must be finite, got {arr}")
    return arr.copy()


def check_lr(lr):
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise MemlessError(f"lr must be a finite number > 0, got {lr!r}")
    return float(lr)


def check_n(n, allow_none=True):
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        allowed = "an integer >= 0 (or None for the n -> infinity limit)" if allow_none else "an integer >= 0"
        raise MemlessError(f"n must be {allowed}, got {n!r}")
    return int(n)


class Objective:
    """A loss with its autograd gradient, checked at a point.

    ``frozen(theta)`` returns a gradient function that reuses the gradient already
    computed at ``theta`` whenever it is called with that very array -- the
    constant history (theta, ..., theta) of Eq. (4) then costs one gradient.
    ``check(theta)`` computes the loss and its gradient in one pass and keeps the
    gradient for that array, so checking a point costs nothing extra.
    """

    def __init__(self, loss):
        if not callable(loss):
            raise LossError(f"loss must be a callable theta -> scalar, got {type(loss).__name__}")
        self.loss = loss
        self.gradient = _autograd_grad(loss)
        self._value_and_gradient = _value_and_grad(loss)
        self._checked = (None, None)

    def gradient_at(self, theta):
        """The gradient at theta, reused if theta is the array last checked."""
        checked, g = self._checked
        return g if theta is checked else self.gradient(theta)

    def check(self, theta):
        """Raise LossError unless loss(theta) is a finite scalar with a finite gradient."""
        try:
            with np.errstate(all="ignore"):
                value, g = self._value_and_gradient(theta)
        except MemlessError:
            raise
        except Exception:
            value, g = self._diagnose(theta)
        if np.ndim(value) != 0:
            raise LossError(f"loss must return a scalar, got an array of shape {np.shape(value)}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise LossError(f"loss must return a real scalar, got {type(value).__name__}") from None
        if not math.isfinite(value):
            raise LossError(f"loss returned {value} at theta={theta}; it must be finite")
        g = np.asarray(g, dtype=float)
        if g.shape != np.shape(theta) or not np.all(np.isfinite(g)):
            raise LossError(f"the loss gradient at theta={theta} is not finite: {g}")
        self._checked = (theta, g)
        return self

    def _diagnose(self, theta):
        """The loss failed under autograd: say whether the loss itself or its derivative is at fault."""
        try:
            value = self.loss(theta)
        except MemlessError:
            raise
        except Exception as exc:
            raise LossError(
                f"loss(theta) raised {type(exc).__name__}: {exc} (theta has shape {np.shape(theta)})") from exc
        if np.ndim(value) != 0:
            raise LossError(f"loss must return a scalar, got an array of shape {np.shape(value)}")
        try:
            with np.errstate(all="ignore"):
                g = self.gradient(theta)
        except Exception as exc:
            raise LossError(
                f"autograd could not differentiate the loss: {type(exc).__name__}: {exc}; "
                "write it with autograd.numpy (import autograd.numpy as np)") from exc
        return value, g

    def frozen(self, theta, g=None):
        gradient = self.gradient
        if g is None:
            g = self.gradient_at(theta)

        def frozen_gradient(x):
            return g if x is theta else gradient(x)

        frozen_gradient.value = g
        return frozen_gradient


def objective(loss, theta):
    """A checked :class:`Objective` (loss is an Objective already: reused as is)."""
    obj = loss if isinstance(loss, Objective) else Objective(loss)
    return obj.check(theta)
