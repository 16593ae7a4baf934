"""Input checks shared by the engine and the trajectories: theta, lr, n and the loss.

Every check raises a :class:`~memless.errors.MemlessError` whose one-line
message names the bad value and what is allowed.
"""
import math
import numbers

import numpy as np
import warnings

import autograd.numpy as anp
from autograd import grad as _autograd_grad, make_jvp, make_vjp, value_and_grad as _value_and_grad
from autograd.extend import defjvp, defvjp, primitive

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


#: below this many parameters, autograd's per-operation overhead makes a recorded
#: gradient dearer than recomputing it inside a forward-over-reverse HVP
RECORD_MIN_SIZE = 1000


class Objective:
    """A loss with its autograd gradient, checked at a point.

    ``check(theta)`` computes the loss and its gradient in one pass and keeps the
    gradient for that array.  ``check(theta, linearize=True)`` also keeps the
    recorded computation of the gradient, from which each Hessian-vector product
    H(theta) v is one backward pass (reverse-over-reverse) -- no second gradient
    (for models with at least ``RECORD_MIN_SIZE`` parameters; smaller ones use
    forward-over-reverse, cheaper there).

    ``frozen(theta)`` returns a gradient function for the constant history
    (theta, ..., theta) of Eq. (4): at theta it returns the stored gradient, and
    autograd differentiates it (forward or reverse mode) by the stored Hessian-vector
    product, so the engine's JVPs never recompute the gradient.
    """

    def __init__(self, loss):
        if not callable(loss):
            raise LossError(f"loss must be a callable theta -> scalar, got {type(loss).__name__}")
        self.loss = loss
        self.gradient = _autograd_grad(loss)
        self._value_and_gradient = _value_and_grad(loss)
        self._checked = _Point(None, None, None)

    # -- evaluating at a point ----------------------------------------------

    def _packed(self, theta):
        value, g = self._value_and_gradient(theta)
        return anp.concatenate([anp.ravel(g), anp.reshape(value, (1,))])

    def _evaluate(self, theta, linearize):
        """(value, gradient, hvp or None) at theta."""
        if not linearize or np.size(theta) < RECORD_MIN_SIZE:
            value, g = self._value_and_gradient(theta)
            return value, g, None
        with warnings.catch_warnings():
            # a loss with a constant gradient has H = 0: the recorded pass then says so
            warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
            backward, packed = make_vjp(self._packed)(theta)
        packed = np.asarray(packed)
        pad = np.zeros(1)

        def hvp(v):
            # H is symmetric, so the vector-Jacobian product of the gradient is H v
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Output seems independent of input", UserWarning)
                return backward(anp.concatenate([v, pad]))

        return packed[-1], packed[:-1], hvp

    def gradient_at(self, theta):
        """The gradient at theta, reused if theta is the array last checked."""
        point = self._checked
        return point.gradient if theta is point.theta else self.gradient(theta)

    def check(self, theta, linearize=False):
        """Raise LossError unless loss(theta) is a finite scalar with a finite gradient."""
        try:
            with np.errstate(all="ignore"):
                value, g, hvp = self._evaluate(theta, linearize)
        except MemlessError:
            raise
        except Exception:
            value, g = self._diagnose(theta)
            hvp = None
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
        self._checked = _Point(theta, g, hvp)
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

    # -- the gradient at a constant history -----------------------------------

    def frozen(self, theta, linearize=False):
        """A gradient function that knows the gradient (and, if linearized, the HVP) at theta.

        ``.value`` is the gradient at theta.  Called at other points it computes
        the gradient there, and autograd differentiates it as usual.
        """
        point = self._checked
        wants_record = linearize and np.size(theta) >= RECORD_MIN_SIZE
        if theta is not point.theta or (wants_record and point.hvp is None):
            if wants_record:
                value, g, hvp = self._evaluate(theta, True)
                point = _Point(theta, np.asarray(g, dtype=float), hvp)
            else:
                point = _Point(theta, np.asarray(self.gradient(theta), dtype=float), None)
            self._checked = point
        return _frozen_gradient(self.gradient, point)


class _Point:
    """What is known at one point: theta, the gradient there and (if recorded) v -> H v."""

    __slots__ = ("theta", "gradient", "hvp", "gradient_function")

    def __init__(self, theta, gradient, hvp, gradient_function=None):
        self.theta, self.gradient, self.hvp = theta, gradient, hvp
        self.gradient_function = gradient_function

    def at(self, x):
        return x is self.theta or np.array_equal(x, self.theta)

    def hessian_times(self, x, v):
        if self.hvp is not None and self.at(x):
            return self.hvp(v)
        return make_jvp(self.gradient_function)(x)(v)[1]


# One primitive for all points (autograd registers derivative rules globally, so a
# primitive per point would keep every recorded gradient alive).
@primitive
def _gradient_near(x, point):
    return point.gradient if point.at(x) else point.gradient_function(x)


defjvp(_gradient_near, lambda x_dot, ans, x, point: point.hessian_times(x, x_dot), None)
defvjp(_gradient_near, lambda ans, x, point: lambda u: point.hessian_times(x, u), None)


def _frozen_gradient(gradient, point):
    point = _Point(point.theta, point.gradient, point.hvp, gradient)

    def frozen_gradient(x):
        return _gradient_near(x, point)

    frozen_gradient.value = point.gradient
    return frozen_gradient


def objective(loss, theta, linearize=False):
    """A checked :class:`Objective` (loss is an Objective already: reused as is).

    ``linearize=True`` records the gradient's computation for Hessian-vector products.
    """
    obj = loss if isinstance(loss, Objective) else Objective(loss)
    return obj.check(theta, linearize=linearize)
