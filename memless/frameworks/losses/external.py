"""A loss given by its value, gradient and Hessian-vector products (NumPy in, NumPy out)."""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Tuple

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp, primitive

from ...checks import check_theta, said, shown
from ...errors import DerivativeWarning, LossError
from ...parameters import Layout

#: relative disagreement of hvp with the gradient's central difference above which a warning is issued
#: (the extrapolated difference is accurate to ~1e-8 relative on smooth losses; float32 frameworks
#: reach ~1e-4, so this flags a wrong hvp, not a float32 one)
HVP_CHECK = 1e-3


class ExternalLoss:
    """A loss on flat theta computed outside autograd.

    * ``value(theta) -> float``, ``gradient(theta) -> array``, ``hvp(theta, v) -> H(theta) v``;
    * ``value_and_gradient``: optionally both in one call (a framework's fused pass);
    * ``linearize``: optionally ``theta -> (value, gradient, v -> H(theta) v)`` in one pass that
      keeps what the HVPs at theta need (a framework's recorded ``vjp``: each HVP is then one
      backward pass, with no second gradient);
    * ``start``: an optional start point (then ``theta=None`` works everywhere);
    * ``layout``: an optional :class:`~memless.parameters.Layout` of named arrays (a
      framework's parameter names and shapes), for the optimizers that act per matrix;
    * ``third``: optionally ``(theta, v, w) -> D^3 L(theta)[v, w]``, the derivative of H(theta) v
      along w (a vector; symmetric in v and w): with it the second-order correction
      (``order=2``) works on this loss;
    * ``check`` (default True): compare ``hvp`` with a central difference of ``gradient`` once,
      at ``start`` (or at the first point used), and ``third`` with a central difference of
      ``hvp`` at its first use, and warn if they disagree (:meth:`check_hvp`, :meth:`check_third`).

    Called as ``loss(theta)`` it is an autograd primitive whose gradient is ``gradient``,
    whose gradient's derivative is ``hvp`` and, if given, whose HVP's derivative is ``third``:
    the engine's forward- and reverse-mode derivatives come from the framework.  Without
    ``third``, ``order=2`` is refused in one line.
    """

    def __init__(self, value: Callable, gradient: Callable, hvp: Callable, *, value_and_gradient=None,
                 linearize=None, third=None, start=None, layout: Optional[Layout] = None, name: str = "external",
                 check: bool = True):
        for label, fun in (("value", value), ("gradient", gradient), ("hvp", hvp)):
            if not callable(fun):
                raise LossError(f"ExternalLoss needs a callable {label}, got {type(fun).__name__}")
        for label, fun in (("value_and_gradient", value_and_gradient), ("linearize", linearize), ("third", third)):
            if fun is not None and not callable(fun):
                raise LossError(f"ExternalLoss: {label} must be a callable, got {type(fun).__name__}")
        self.value_function, self.gradient_function, self.hvp_function = value, gradient, hvp
        self.fused_function, self.linearize_function, self.third_function = value_and_gradient, linearize, third
        self.start = None if start is None else check_theta(start, "start")
        if layout is not None and not isinstance(layout, Layout):
            raise LossError(f"ExternalLoss: layout must be a memless Layout or None, got {shown(layout)}")
        if layout is not None and self.start is not None and layout.size != self.start.size:
            raise LossError(f"ExternalLoss: the layout holds {layout.size} parameters, start has {self.start.size}")
        self.layout = layout
        self.__name__ = name
        self.hvp_error: Optional[float] = None       #: the check's measured disagreement (None: not checked)
        self.third_error: Optional[float] = None     #: the same for ``third``
        self._check = bool(check)
        self._check_third = bool(check) and third is not None
        if self._check and self.start is not None:
            self.check_hvp(self.start)

    def check_hvp(self, theta) -> float:
        """Compare ``hvp(theta, v)`` with a central difference of ``gradient`` along a fixed random v
        (steps 1e-4 and 5e-5 relative, Richardson-extrapolated: error O(step^4)); warn with a
        :class:`~memless.DerivativeWarning` where they disagree by more than :data:`HVP_CHECK`
        (relative).  Four gradients and one HVP.  Returns the relative disagreement."""
        theta = np.asarray(theta, dtype=float)
        self._check = False
        v = np.random.default_rng(0).standard_normal(theta.shape)
        self.hvp_error = _against_difference(self.gradient, theta, v, self.hvp(theta, v))
        if not self.hvp_error <= HVP_CHECK:
            warnings.warn(f"{self.__name__}: hvp(theta, v) disagrees with a central difference of gradient by "
                          f"{self.hvp_error:.1e} (relative, above {HVP_CHECK:.0e}): hvp is not the derivative of "
                          "gradient, so every correction computed from this loss is wrong", DerivativeWarning,
                          stacklevel=3)
        return self.hvp_error

    def check_third(self, theta) -> float:
        """Compare ``third(theta, v, w)`` with the same central difference of ``hvp(., v)`` along w (fixed
        random v, w), as :meth:`check_hvp` does for ``hvp``; warn above :data:`HVP_CHECK`.  Four HVPs and
        one third derivative.  Returns the relative disagreement."""
        theta = np.asarray(theta, dtype=float)
        self._check_third = False
        rng = np.random.default_rng(1)
        v, w = rng.standard_normal(theta.shape), rng.standard_normal(theta.shape)
        self.third_error = _against_difference(lambda x: self.hvp(x, v), theta, w, self.third(theta, v, w))
        if not self.third_error <= HVP_CHECK:
            warnings.warn(f"{self.__name__}: third(theta, v, w) disagrees with a central difference of hvp by "
                          f"{self.third_error:.1e} (relative, above {HVP_CHECK:.0e}): it is not the derivative of "
                          "hvp, so every second-order correction computed from this loss is wrong", DerivativeWarning,
                          stacklevel=3)
        return self.third_error

    # the numbers, as float64 NumPy; whatever the user's functions raise or return wrongly is named
    def value(self, theta) -> float:
        out = self._call("value", self.value_function, np.asarray(theta, dtype=float))
        try:
            return float(out)
        except (TypeError, ValueError):
            raise LossError(f"{self.__name__}: value(theta) must return a number, got {shown(out, 60)}") from None

    def gradient(self, theta) -> np.ndarray:
        return _vector(self._call("gradient", self.gradient_function, np.asarray(theta, dtype=float)), theta,
                       f"{self.__name__}: gradient(theta)")

    def hvp(self, theta, v) -> np.ndarray:
        return _vector(self._call("hvp", self.hvp_function, np.asarray(theta, dtype=float),
                                  np.asarray(v, dtype=float)), theta, f"{self.__name__}: hvp(theta, v)")

    def third(self, theta, v, w) -> np.ndarray:
        """D^3 L(theta)[v, w]: the derivative of H(theta) v along w."""
        if self.third_function is None:
            _no_third()
        if self._check_third:
            self.check_third(theta)
        return _vector(self._call("third", self.third_function, np.asarray(theta, dtype=float),
                                  np.asarray(v, dtype=float), np.asarray(w, dtype=float)), theta,
                       f"{self.__name__}: third(theta, v, w)")

    def _call(self, what, function, *args):
        try:
            return function(*args)
        except LossError:
            raise
        except Exception as exc:
            raise LossError(f"{self.__name__}: the loss's {what} function raised {type(exc).__name__}: "
                            f"{said(exc)}") from exc

    def value_and_gradient(self, theta) -> Tuple[float, np.ndarray]:
        if self.fused_function is None:
            return self.value(theta), self.gradient(theta)
        value, g = self.fused_function(np.asarray(theta, dtype=float))
        return float(value), _vector(g, theta)

    # -- what the engine calls (memless.engine.objective.Objective) --------------------

    def linearize(self, theta) -> Tuple[float, np.ndarray, Callable]:
        """(value, gradient, v -> H(theta) v) at theta: the engine's one evaluation per point."""
        theta = np.asarray(theta, dtype=float)
        if self._check:              # no start point was given: check at the first point used
            self.check_hvp(theta)
        if self.linearize_function is None:
            value, g = self.value_and_gradient(theta)
            return value, g, lambda v: self.hvp(theta, v)
        value, g, hvp = self.linearize_function(theta)
        return float(value), _vector(g, theta), lambda v: _vector(hvp(np.asarray(v, dtype=float)), theta)

    def traced_gradient(self, theta):
        """The gradient as autograd sees it (its derivatives are Hessian-vector products)."""
        return _external_gradient(theta, self)

    def __call__(self, theta):
        return _external_value(theta, self)

    def __repr__(self) -> str:
        return f"ExternalLoss({self.__name__})"


def _against_difference(function, theta, direction, derivative) -> float:
    """max |derivative - D function(theta)[direction]| / scale, the directional derivative taken by central
    differences at steps 1e-4 and 5e-5 (relative to theta), Richardson-extrapolated (error O(step^4))."""
    step = 1e-4 * max(float(np.max(np.abs(theta))) if theta.size else 0.0, 1.0)
    quotients = [(function(theta + h * direction) - function(theta - h * direction)) / (2 * h) for h in (step, step / 2)]
    difference = (4 * quotients[1] - quotients[0]) / 3
    scale = max(float(np.max(np.abs(derivative))), float(np.max(np.abs(difference))), 1e-300)
    return float(np.max(np.abs(derivative - difference))) / scale


def _vector(x, like, what: str = "the loss") -> np.ndarray:
    """A framework's array as float64 NumPy of theta's shape (a one-line LossError otherwise)."""
    try:
        out = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise LossError(f"{what} must return an array of real numbers, got {type(x).__name__}") from None
    if out.size != np.size(like):
        raise LossError(f"{what} returned {out.size} numbers (shape {out.shape}); theta has {np.size(like)}")
    return out.reshape(np.shape(like))


@primitive
def _external_value(theta, loss):
    return loss.value(theta)


@primitive
def _external_gradient(theta, loss):
    return loss.gradient(theta)


@primitive
def _external_hvp(theta, v, loss):
    return loss.hvp(theta, v)


@primitive
def _external_third(theta, v, w, loss):
    return loss.third(theta, v, w)


def _no_third(*args):
    raise LossError("an ExternalLoss supplies value, gradient and Hessian-vector products (and a third derivative "
                    "only where given); a third derivative was requested")


def _no_fourth(*args):
    raise LossError("an ExternalLoss supplies derivatives up to the third; a fourth derivative was requested")


defvjp(_external_value, lambda ans, theta, loss: lambda g: g * _external_gradient(theta, loss), None)
defjvp(_external_value, lambda v, ans, theta, loss: anp.sum(_external_gradient(theta, loss) * v), None)
# the Hessian is symmetric: the gradient's VJP and JVP are both Hessian-vector products
defvjp(_external_gradient, lambda ans, theta, loss: lambda u: _external_hvp(theta, u, loss), None)
defjvp(_external_gradient, lambda v, ans, theta, loss: _external_hvp(theta, v, loss), None)
# D^3 L is symmetric: the HVP's derivatives in theta are third derivatives, in v Hessian-vector products
defvjp(_external_hvp, lambda ans, theta, v, loss: lambda u: _external_third(theta, v, u, loss),
       lambda ans, theta, v, loss: lambda u: _external_hvp(theta, u, loss), None)
defjvp(_external_hvp, lambda d, ans, theta, v, loss: _external_third(theta, v, d, loss),
       lambda d, ans, theta, v, loss: _external_hvp(theta, d, loss), None)
defvjp(_external_third, lambda ans, theta, v, w, loss: _no_fourth,
       lambda ans, theta, v, w, loss: lambda u: _external_third(theta, w, u, loss),
       lambda ans, theta, v, w, loss: lambda u: _external_third(theta, v, u, loss), None)
defjvp(_external_third, lambda d, ans, theta, v, w, loss: _no_fourth(),
       lambda d, ans, theta, v, w, loss: _external_third(theta, d, w, loss),
       lambda d, ans, theta, v, w, loss: _external_third(theta, v, d, loss), None)
