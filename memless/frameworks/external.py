"""A loss given by its value, gradient and Hessian-vector products (NumPy in, NumPy out)."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import autograd.numpy as anp
import numpy as np
from autograd.extend import defjvp, defvjp, primitive

from ..errors import LossError
from ..parameters import Layout


class ExternalLoss:
    """A loss on flat theta computed outside autograd.

    * ``value(theta) -> float``, ``gradient(theta) -> array``, ``hvp(theta, v) -> H(theta) v``;
    * ``value_and_gradient``: optionally both in one call (a framework's fused pass);
    * ``linearize``: optionally ``theta -> (value, gradient, v -> H(theta) v)`` in one pass that
      keeps what the HVPs at theta need (a framework's recorded ``vjp``: each HVP is then one
      backward pass, with no second gradient);
    * ``start``: an optional start point (then ``theta=None`` works everywhere);
    * ``layout``: an optional :class:`~memless.parameters.Layout` of named arrays (a
      framework's parameter names and shapes), for the optimizers that act per matrix.

    Called as ``loss(theta)`` it is an autograd primitive whose gradient is ``gradient``
    and whose gradient's derivative is ``hvp``: the engine's forward- and reverse-mode
    derivatives up to second order come from the framework.  Third derivatives are not
    available (no memless computation needs them).
    """

    def __init__(self, value: Callable, gradient: Callable, hvp: Callable, *, value_and_gradient=None,
                 linearize=None, start=None, layout: Optional[Layout] = None, name: str = "external"):
        for label, fun in (("value", value), ("gradient", gradient), ("hvp", hvp)):
            if not callable(fun):
                raise LossError(f"ExternalLoss needs a callable {label}, got {type(fun).__name__}")
        for label, fun in (("value_and_gradient", value_and_gradient), ("linearize", linearize)):
            if fun is not None and not callable(fun):
                raise LossError(f"ExternalLoss: {label} must be a callable, got {type(fun).__name__}")
        self.value_function, self.gradient_function, self.hvp_function = value, gradient, hvp
        self.fused_function, self.linearize_function = value_and_gradient, linearize
        self.start = None if start is None else np.asarray(start, dtype=float)
        self.layout = layout
        self.__name__ = name

    # the numbers, as float64 NumPy
    def value(self, theta) -> float:
        return float(self.value_function(np.asarray(theta, dtype=float)))

    def gradient(self, theta) -> np.ndarray:
        return _vector(self.gradient_function(np.asarray(theta, dtype=float)), theta)

    def hvp(self, theta, v) -> np.ndarray:
        return _vector(self.hvp_function(np.asarray(theta, dtype=float), np.asarray(v, dtype=float)), theta)

    def value_and_gradient(self, theta) -> Tuple[float, np.ndarray]:
        if self.fused_function is None:
            return self.value(theta), self.gradient(theta)
        value, g = self.fused_function(np.asarray(theta, dtype=float))
        return float(value), _vector(g, theta)

    # -- what the engine calls (memless.objective.Objective) --------------------

    def linearize(self, theta) -> Tuple[float, np.ndarray, Callable]:
        """(value, gradient, v -> H(theta) v) at theta: the engine's one evaluation per point."""
        theta = np.asarray(theta, dtype=float)
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


def _vector(x, like) -> np.ndarray:
    """A framework's array as float64 NumPy of theta's shape."""
    return np.asarray(x, dtype=float).reshape(np.shape(like))


@primitive
def _external_value(theta, loss):
    return loss.value(theta)


@primitive
def _external_gradient(theta, loss):
    return loss.gradient(theta)


@primitive
def _external_hvp(theta, v, loss):
    return loss.hvp(theta, v)


def _no_third(*args):
    raise LossError("an ExternalLoss supplies value, gradient and Hessian-vector products; "
                    "a third derivative was requested")


defvjp(_external_value, lambda ans, theta, loss: lambda g: g * _external_gradient(theta, loss), None)
defjvp(_external_value, lambda v, ans, theta, loss: anp.sum(_external_gradient(theta, loss) * v), None)
# the Hessian is symmetric: the gradient's VJP and JVP are both Hessian-vector products
defvjp(_external_gradient, lambda ans, theta, loss: lambda u: _external_hvp(theta, u, loss), None)
defjvp(_external_gradient, lambda v, ans, theta, loss: _external_hvp(theta, v, loss), None)
defvjp(_external_hvp, lambda ans, theta, v, loss: _no_third,
       lambda ans, theta, v, loss: lambda u: _external_hvp(theta, u, loss), None)
defjvp(_external_hvp, lambda d, ans, theta, v, loss: _no_third(),
       lambda d, ans, theta, v, loss: _external_hvp(theta, d, loss), None)
